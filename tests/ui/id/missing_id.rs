// Every entity has exactly one #[repo(id)] field.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    id: Uuid,
    title: String,
}

fn main() {}
