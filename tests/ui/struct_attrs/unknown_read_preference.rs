// `reads` takes "primary" or "replica"; any other value is refused at the value, naming both.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(reads = "secondary")]
struct Balance {
    #[repo(id)]
    id: Uuid,
    cents: i64,
}

fn main() {}
