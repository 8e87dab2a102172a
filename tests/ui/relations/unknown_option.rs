// references(..) takes the referenced entity and on_delete only; anything else is refused at it.
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
    #[repo(references(Document, on_update = "cascade"))]
    document_id: Uuid,
}

fn main() {}
