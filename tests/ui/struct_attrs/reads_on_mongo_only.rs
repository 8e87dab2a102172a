// `reads` routes PostgreSQL reads: a MongoDB-only entity cannot take it (its
// reads follow MONGODB_URL's readPreference); one stored in both backends can.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongo", collection = "balances", reads = "primary")]
struct Balance {
    #[repo(id)]
    id: Uuid,
    cents: i64,
}

fn main() {}
