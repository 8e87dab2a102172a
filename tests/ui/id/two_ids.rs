// Composite keys are not supported: only one field can be #[repo(id)].
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(id)]
    other: Uuid,
}

fn main() {}
