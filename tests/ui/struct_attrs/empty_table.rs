// A table name cannot be empty.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(table = "")]
struct Document {
    #[repo(id)]
    id: Uuid,
}

fn main() {}
