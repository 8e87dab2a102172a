// pgvector's IVFFlat has no operator class for the l1 (or jaccard) distance.
use reposmith::{Repository, Vector};
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(vector(dims = 8, distance = "l1", index = "ivfflat"))]
    embedding: Vector,
}

fn main() {}
