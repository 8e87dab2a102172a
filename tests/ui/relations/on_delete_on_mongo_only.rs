// MongoDB has no foreign keys: on_delete on a MongoDB-only entity is refused.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongo")]
struct Document {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
#[repo(backend = "mongo")]
struct Chunk {
    #[repo(id)]
    id: i64,
    #[repo(references(Document, on_delete = "cascade"))]
    document_id: Uuid,
}

fn main() {}
