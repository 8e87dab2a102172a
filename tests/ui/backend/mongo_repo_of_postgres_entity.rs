// Asking MongoDB for a PostgreSQL-only entity's repository does not compile.
use reposmith::{Repository, Store};
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "postgres", table = "documents")]
struct Document {
    #[repo(id)]
    id: Uuid,
}

fn documents(store: &Store) {
    let _ = store.mongo_repo::<Document>();
}

fn main() {}
