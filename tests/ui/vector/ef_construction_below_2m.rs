// HNSW needs ef_construction >= 2 * m; `lists` belongs to ivfflat.
use reposmith::{Bit, HalfVector, Repository, SparseVector, Vector};
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    body: String,
    #[repo(vector(dims = 8, m = 16, ef_construction = 16, lists = 10))]
    embedding: Vector,
}

fn main() {
    let _ = (Bit::new(&[]), HalfVector::from_f32_slice(&[]), SparseVector::from_dense(&[]), Vector::from(vec![]));
}
