// A `soft_delete` field has no other role: `updated_at` is set on every write.
use chrono::{DateTime, Utc};
use reposmith::Repository;

#[derive(Repository)]
struct Note {
    #[repo(id)]
    id: i64,
    #[repo(updated_at, soft_delete)]
    deleted_at: Option<DateTime<Utc>>,
}

fn main() {}
