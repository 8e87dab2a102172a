// `collection` names a MongoDB collection: a PostgreSQL-only entity has none.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "postgres", collection = "docs")]
struct Document {
    #[repo(id)]
    id: Uuid,
}

fn main() {}
