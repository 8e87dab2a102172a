// `#[repo(cache(..))]` puts its lifetimes and the struct's shape hash on the
// schema; the hash follows the stored fields, not the formatting, and the
// unique finders of a cached entity compile through `.cached(..)`.
use reposmith::{Entity, PgBackend, Repository};
use uuid::Uuid;

#[derive(Repository)]
#[repo(cache(ttl = "5m", negative_ttl = "30s"))]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
    #[repo(index)]
    team: String,
}

/// `Account` with one field's type changed.
mod retyped {
    use reposmith::Repository;
    use uuid::Uuid;

    #[derive(Repository)]
    #[repo(cache(ttl = "5m", negative_ttl = "30s"))]
    pub(crate) struct Account {
        #[repo(id)]
        id: Uuid,
        #[repo(unique)]
        email: String,
        #[repo(index)]
        team: Option<String>,
    }
}

/// `Account` with other docs, comments and visibility: the same stored shape.
mod documented {
    use reposmith::Repository;
    use uuid::Uuid;

    /// An account, documented.
    #[derive(Repository)]
    #[repo(cache(ttl = "5m", negative_ttl = "30s"))]
    pub(crate) struct Account {
        /// The key.
        #[repo(id)]
        pub(crate) id: Uuid,
        // Where mail goes.
        #[repo(unique)]
        pub(crate) email: String,
        #[repo(index)]
        pub(crate) team: String,
    }
}

/// Cached for an hour; absent rows are not cached.
#[derive(Repository)]
#[repo(cache(ttl = "1h"))]
struct Team {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
struct Uncached {
    #[repo(id)]
    id: Uuid,
}

/// A unique finder of a cached entity reads through the repository cache.
#[allow(dead_code)]
async fn by_email(pg: &PgBackend) -> reposmith::Result<Option<Account>> {
    pg.repo::<Account>().find_by_email("ada@example.com").await
}

fn main() {
    let spec = Account::SCHEMA.cache.expect("Account is cached");
    assert_eq!((spec.ttl_ms, spec.negative_ttl_ms), (300_000, 30_000));
    assert_eq!(spec.ttl(), std::time::Duration::from_secs(300));
    assert_eq!(
        spec.negative_ttl(),
        Some(std::time::Duration::from_secs(30))
    );

    let team = Team::SCHEMA.cache.expect("Team is cached");
    assert_eq!((team.ttl_ms, team.negative_ttl_ms), (3_600_000, 0));
    assert_eq!(team.negative_ttl(), None);
    assert_eq!(Uncached::SCHEMA.cache, None);

    let shape = |schema: &reposmith::EntitySchema| schema.cache.expect("cached").shape;
    assert_ne!(
        shape(Account::SCHEMA),
        shape(retyped::Account::SCHEMA),
        "a changed field type changes the shape"
    );
    assert_eq!(
        shape(Account::SCHEMA),
        shape(documented::Account::SCHEMA),
        "docs, comments and visibility do not"
    );
    assert_ne!(shape(Account::SCHEMA), shape(Team::SCHEMA));
}
