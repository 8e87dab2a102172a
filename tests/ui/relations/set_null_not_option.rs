// on_delete = "set_null" needs an Option field to set to NULL.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
struct Chunk {
    #[repo(id)]
    id: i64,
    #[repo(references(Document, on_delete = "set_null"))]
    document_id: Uuid,
}

fn main() {}
