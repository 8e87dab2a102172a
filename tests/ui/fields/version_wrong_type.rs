// A #[repo(version)] field is i64.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(version)]
    version: i32,
}

fn main() {}
