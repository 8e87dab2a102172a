// A skipped field is not stored, so no storage option applies to it.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(skip, column = "score")]
    score: f64,
}

fn main() {}
