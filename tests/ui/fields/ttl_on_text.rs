// `ttl` applies to a DateTime<Utc> field, and its lifetime has a unit.
use chrono::{DateTime, Utc};
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Trace {
    #[repo(id)]
    id: Uuid,
    #[repo(ttl = "30d")]
    prompt: String,
    #[repo(ttl = "30 days")]
    at: DateTime<Utc>,
}

fn main() {}
