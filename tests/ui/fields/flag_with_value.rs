// Flags such as `unique` take no value.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(unique = "yes")]
    source_url: String,
}

fn main() {}
