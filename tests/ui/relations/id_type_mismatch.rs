// A reference field holds the target's id type (or an Option of it).
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
    #[repo(references(Document))]
    document_id: i64,
    #[repo(references(Document, on_delete = "set_null"))]
    source_id: Option<String>,
}

fn main() {}
