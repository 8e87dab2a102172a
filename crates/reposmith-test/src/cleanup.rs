//! Removing what failed tests left behind: every PostgreSQL database,
//! MongoDB database and Redis key prefix named `reposmith_test_<secs>_..`
//! older than a given age (the age is read from the name), and optionally
//! the template databases (the next test builds the one it needs again).
//!
//! Run [`cleanup`] from code, or the `reposmith-test-cleanup` binary of
//! this crate ([`COMMAND`]). Both read the same environment variables as
//! the application and the tests.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use reposmith_core::config::Env;
use reposmith_mongo::{MongoBackend, MongoConfig};
use reposmith_postgres::PgConfig;
use reposmith_redis::{RedisBackend, RedisConfig};

use crate::error::{Error, Result};
use crate::names::{PREFIX, TEMPLATE_PREFIX, created_at, id_of_key};
use crate::postgres::PgAdmin;

/// The command that removes leftovers, as a failed test prints it (with
/// `--id <its id>` appended: only that test's stores, so tests still
/// running are never touched; `--older-than 1h` instead removes every
/// leftover older than an hour).
pub const COMMAND: &str = "cargo run -p reposmith-test --bin reposmith-test-cleanup --";

/// What [`cleanup`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupOptions {
    /// Only stores made at least this long ago (a running test's are younger).
    pub older_than: Duration,
    /// Also drop every `reposmith_tpl_*` template database.
    pub templates: bool,
}

/// What [`cleanup`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// PostgreSQL databases dropped (test databases, then templates).
    pub postgres: Vec<String>,
    /// MongoDB databases dropped.
    pub mongo: Vec<String>,
    /// Redis prefixes whose keys were deleted.
    pub redis_prefixes: Vec<String>,
    /// Redis keys deleted.
    pub redis_keys: u64,
}

/// Removes the leftovers [`CleanupOptions`] selects from every backend the
/// environment configures.
pub async fn cleanup(options: CleanupOptions) -> Result<CleanupReport> {
    let env = Env::process();
    let cutoff = SystemTime::now()
        .checked_sub(options.older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let old = |name: &str| created_at(name).is_some_and(|made| made <= cutoff);
    let mut report = CleanupReport::default();
    if let Some(config) = PgConfig::from_env(&env)? {
        let mut admin = PgAdmin::connect(&config).await?;
        for db in admin.databases_like(PREFIX).await? {
            if old(&db) {
                admin.drop_database(&db).await?;
                report.postgres.push(db);
            }
        }
        if options.templates {
            for db in admin.databases_like(TEMPLATE_PREFIX).await? {
                admin.drop_database(&db).await?;
                report.postgres.push(db);
            }
        }
        admin.close().await?;
    }
    if let Some(config) = MongoConfig::from_env(&env)? {
        let mongo = MongoBackend::connect(&config).await?;
        let names = mongo
            .client()
            .list_database_names()
            .await
            .map_err(|e| mongo.map_error(e))?;
        for db in names.into_iter().filter(|n| old(n)) {
            let dropped = mongo.client().database(&db).drop().await;
            dropped.map_err(|e| mongo.map_error(e))?;
            report.mongo.push(db);
        }
        mongo.close().await;
    }
    if let Some(config) = RedisConfig::from_env(&env)? {
        let redis = RedisBackend::connect(&config).await?;
        for prefix in redis_prefixes(&redis).await? {
            if old(&prefix) {
                report.redis_keys += redis.delete_prefixed(&prefix).await?;
                report.redis_prefixes.push(prefix);
            }
        }
    }
    Ok(report)
}

/// Removes one test's stores (the id a failed test printed: its PostgreSQL
/// database, MongoDB database and Redis prefix share it), whatever its age.
/// A name that is not a test store's is refused, so this never drops an
/// application's database.
pub async fn remove(id: &str) -> Result<()> {
    if created_at(id).is_none() {
        return Err(Error::Backend(reposmith_core::Error::config(
            "test store",
            format!("{id:?} is not a test store's name ({PREFIX}<secs>_<12 hex digits>)"),
        )));
    }
    let env = Env::process();
    if let Some(config) = PgConfig::from_env(&env)? {
        let mut admin = PgAdmin::connect(&config).await?;
        admin.drop_database(id).await?;
        admin.close().await?;
    }
    if let Some(config) = MongoConfig::from_env(&env)? {
        let mongo = MongoBackend::connect(&config).await?;
        let dropped = mongo.client().database(id).drop().await;
        dropped.map_err(|e| mongo.map_error(e))?;
        mongo.close().await;
    }
    if let Some(config) = RedisConfig::from_env(&env)? {
        RedisBackend::connect(&config)
            .await?
            .delete_prefixed(id)
            .await?;
    }
    Ok(())
}

/// Every test prefix that has keys on the server.
async fn redis_prefixes(redis: &RedisBackend) -> Result<BTreeSet<String>> {
    let mut conn = redis.connection();
    let mut found = BTreeSet::new();
    for pattern in [format!("{PREFIX}*"), format!("{{{PREFIX}*")] {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = reposmith_redis::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| Error::Backend(redis.map_error(&e)))?;
            found.extend(keys.iter().filter_map(|k| id_of_key(k)).map(str::to_owned));
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(found)
}
