// pgvector has no IVFFlat index for sparsevec.
use reposmith::{Bit, HalfVector, Repository, SparseVector, Vector};
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    body: String,
    #[repo(vector(dims = 30000, distance = "l2", index = "ivfflat"))]
    embedding: SparseVector,
}

fn main() {
    let _ = (Bit::new(&[]), HalfVector::from_f32_slice(&[]), SparseVector::from_dense(&[]), Vector::from(vec![]));
}
