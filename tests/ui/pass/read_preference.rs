// `#[repo(reads = "..")]` puts the entity's read preference on its schema:
// "primary" keeps PostgreSQL pool reads on the primary, "replica" (the
// default) lets them go to a healthy replica. An entity stored in both
// backends takes it too.
use reposmith::{Entity, ReadPreference, Repository};
use uuid::Uuid;

#[derive(Repository)]
#[repo(reads = "primary")]
struct Balance {
    #[repo(id)]
    id: Uuid,
    cents: i64,
}

#[derive(Repository)]
#[repo(backend = "postgres", table = "ledger_entries", reads = "primary")]
struct LedgerEntry {
    #[repo(id)]
    id: i64,
    cents: i64,
}

#[derive(Repository)]
#[repo(backend = "postgres", reads = "replica")]
struct Article {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
struct Comment {
    #[repo(id)]
    id: Uuid,
}

// The preference is known at compile time.
const _: () = assert!(matches!(Balance::SCHEMA.reads, ReadPreference::Primary));

fn main() {
    assert_eq!(Balance::SCHEMA.reads, ReadPreference::Primary);
    assert_eq!(LedgerEntry::SCHEMA.reads, ReadPreference::Primary);
    assert_eq!(Article::SCHEMA.reads, ReadPreference::Replica);
    assert_eq!(Comment::SCHEMA.reads, ReadPreference::Replica);
    assert_eq!(ReadPreference::default(), ReadPreference::Replica);
}
