// A JSON field cannot be unique.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(json, unique)]
    metadata: serde_json::Value,
}

fn main() {}
