// The id cannot be optional.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Option<Uuid>,
}

fn main() {}
