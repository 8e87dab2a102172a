// A field has at most one of id, version, created_at, updated_at.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(created_at, updated_at)]
    stamp: chrono::DateTime<chrono::Utc>,
}

fn main() {}
