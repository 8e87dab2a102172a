// Only one field can be `soft_delete`: a row is deleted once, at one time.
use chrono::{DateTime, Utc};
use reposmith::Repository;

#[derive(Repository)]
struct Note {
    #[repo(id)]
    id: i64,
    #[repo(soft_delete)]
    deleted_at: Option<DateTime<Utc>>,
    #[repo(soft_delete)]
    removed_at: Option<DateTime<Utc>>,
}

fn main() {}
