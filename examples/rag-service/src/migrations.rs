//! Applying `migrations/rag` when the service starts: the PostgreSQL files
//! with reposmith's migrator (advisory lock, ledger, checksums; the schema
//! owner's URL from `REPOSMITH_MIGRATION_DATABASE_URL` when set), then the
//! MongoDB ones (`migrations/rag/mongo`: collections, indexes, the traces'
//! TTL index). Concurrent starts apply each migration once.

use std::path::Path;
use std::time::Duration;

use reposmith::migrate::apply::Connection;
use reposmith::{PgConfig, Store};

/// How long a start waits for another process's migration lock.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// What [`apply`] applied.
#[derive(Debug, Default)]
pub struct Applied {
    /// PostgreSQL versions applied now.
    pub postgres: Vec<i64>,
    /// MongoDB versions applied now.
    pub mongo: Vec<i64>,
}

/// Applies the pending migrations in `dir` to the store's PostgreSQL
/// (through `pg`, its configuration) and MongoDB.
pub async fn apply(
    dir: &Path,
    pg: &PgConfig,
    store: &Store,
) -> Result<Applied, reposmith::migrate::Error> {
    let postgres = reposmith::migrate::apply(dir, &Connection::for_config(pg)).await?;
    let database = store
        .mongo()
        .map_err(reposmith::migrate::Error::Config)?
        .database();
    let mongo_dir = reposmith::migrate::mongo::dir(dir);
    let mongo = reposmith::migrate::mongo::apply_mongo(&mongo_dir, database, LOCK_WAIT).await?;
    Ok(Applied {
        postgres,
        mongo: mongo.versions,
    })
}
