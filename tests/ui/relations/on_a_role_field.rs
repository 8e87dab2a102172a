// references applies to a plain field, not to the id, a version, a timestamp, JSON or a skipped field.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
struct Chunk {
    #[repo(id, references(Document))]
    id: Uuid,
    #[repo(json, references(Document))]
    meta: Uuid,
}

fn main() {}
