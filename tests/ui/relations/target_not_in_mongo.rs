// An entity stored in both backends references only entities stored in both.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "postgres")]
struct Document {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
struct Chunk {
    #[repo(id)]
    id: i64,
    #[repo(references(Document))]
    document_id: Uuid,
}

fn main() {}
