// A MongoDB-only entity names its collection with `collection`, not `table`.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongo", table = "traces")]
struct Trace {
    #[repo(id)]
    id: Uuid,
}

fn main() {}
