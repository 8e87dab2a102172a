// An HNSW index on `halfvec` holds at most 4,000 dimensions.
use reposmith::{Bit, HalfVector, Repository, SparseVector, Vector};
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    body: String,
    #[repo(vector(dims = 4096))]
    embedding: HalfVector,
}

fn main() {
    let _ = (Bit::new(&[]), HalfVector::from_f32_slice(&[]), SparseVector::from_dense(&[]), Vector::from(vec![]));
}
