// `unique` already creates an index; adding `index` is an error.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(unique, index)]
    source_url: String,
}

fn main() {}
