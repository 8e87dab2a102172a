// A default is a non-empty SQL expression.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(default = " ")]
    title: String,
}

fn main() {}
