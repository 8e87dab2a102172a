// `index` is "hnsw", "ivfflat" or "none": another name is refused at the value.
use reposmith::{Repository, Vector};
use uuid::Uuid;

#[derive(Repository)]
struct Chunk {
    #[repo(id)]
    id: Uuid,
    #[repo(vector(dims = 3, index = "ivf_flat"))]
    embedding: Vector,
}

fn main() {}
