// on_delete is "restrict", "cascade" or "set_null".
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
    #[repo(references(Document, on_delete = "nullify"))]
    document_id: Uuid,
}

fn main() {}
