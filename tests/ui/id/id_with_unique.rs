// The id is already the primary key: `unique` or `index` on it is an error.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id, unique)]
    id: Uuid,
}

fn main() {}
