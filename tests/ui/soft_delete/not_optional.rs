// A `soft_delete` field is an `Option<DateTime<Utc>>`: None while the row is live.
use chrono::{DateTime, Utc};
use reposmith::Repository;

#[derive(Repository)]
struct Note {
    #[repo(id)]
    id: i64,
    #[repo(soft_delete)]
    deleted_at: DateTime<Utc>,
}

fn main() {}
