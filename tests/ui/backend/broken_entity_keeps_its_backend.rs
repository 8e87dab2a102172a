// A MongoDB entity with a broken attribute stays pinned to MongoDB, so code
// that needs its backend (`store.repo::<Trace>()`) adds no second error.
use reposmith::home::{Mongo, Pinned};
use reposmith::Repository;

#[derive(Repository)]
#[repo(backend = "mongo", collection = "traces", tabel = "x")]
struct Trace {
    #[repo(id)]
    id: uuid::Uuid,
}

fn on_mongo<E: Pinned<Home = Mongo>>() {}

fn main() {
    on_mongo::<Trace>();
}
