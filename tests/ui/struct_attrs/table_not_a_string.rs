// `table` takes a string literal.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(table = 5)]
struct Document {
    #[repo(id)]
    id: Uuid,
}

fn main() {}
