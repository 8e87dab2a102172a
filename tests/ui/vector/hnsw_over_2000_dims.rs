// An HNSW index on `vector` holds at most 2,000 dimensions; the error names the fixes.
use reposmith::{Bit, HalfVector, Repository, SparseVector, Vector};
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    body: String,
    #[repo(vector(dims = 3072, distance = "cosine", index = "hnsw"))]
    embedding: Vector,
}

fn main() {
    let _ = (Bit::new(&[]), HalfVector::from_f32_slice(&[]), SparseVector::from_dense(&[]), Vector::from(vec![]));
}
