// `Bit` vectors are compared by hamming or jaccard only.
use reposmith::{Bit, HalfVector, Repository, SparseVector, Vector};
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    body: String,
    #[repo(vector(dims = 64, distance = "cosine"))]
    embedding: Bit,
}

fn main() {
    let _ = (Bit::new(&[]), HalfVector::from_f32_slice(&[]), SparseVector::from_dense(&[]), Vector::from(vec![]));
}
