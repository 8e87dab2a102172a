// The id is Uuid, i64 or String.
use reposmith::Repository;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: f64,
}

fn main() {}
