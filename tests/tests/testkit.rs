//! `#[reposmith::test]` and its runtime (`reposmith-test`): fifty tests
//! writing the same unique keys in parallel on all three stores, a failing
//! test that keeps and names its stores, templates rebuilt only when a
//! migration changes, MongoDB and Redis isolation and teardown, the
//! attribute's options.

mod clock;
mod failing;
mod isolation;
mod parallel;
mod template;

use reposmith::Repository;

/// The migrations of these tests, relative to this crate.
pub(crate) const MIGRATIONS: &str = "tests/testkit/migrations";

/// A row of `testkit_items` (PostgreSQL, cached in Redis).
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "postgres", table = "testkit_items", cache(ttl = "5m"))]
pub(crate) struct PgItem {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(unique)]
    pub(crate) slug: String,
    pub(crate) body: String,
}

/// A document of `testkit_items` (MongoDB; its unique index comes from
/// the MongoDB migration).
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "testkit_items")]
pub(crate) struct MongoItem {
    #[repo(id(assigned))]
    pub(crate) id: i64,
    #[repo(unique)]
    pub(crate) slug: String,
    pub(crate) body: String,
}
