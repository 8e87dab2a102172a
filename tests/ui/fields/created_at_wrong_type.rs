// Timestamps managed by the repository are DateTime<Utc>.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(created_at)]
    created_at: String,
}

fn main() {}
