// At most one field is #[repo(version)].
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(version)]
    version: i64,
    #[repo(version)]
    revision: i64,
}

fn main() {}
