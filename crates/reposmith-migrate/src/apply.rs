//! `apply`, `status` and `revert` through sqlx's [`Migrator`], on one
//! dedicated connection with `lock_timeout` and `statement_timeout` set.
//!
//! Concurrency: one advisory lock per database *and* ledger schema (the
//! first schema of the search path, where `_sqlx_migrations` lives), taken
//! with `pg_try_advisory_lock` in a bounded loop, so three processes applying
//! at once run each migration once and a stuck holder is an error after
//! [`Connection::lock_wait`], not a hang. sqlx's own lock is switched off: it
//! is per database only and waits without bound. The connection is closed
//! after each run, so a failed run never leaves the lock held in a pool.
//! (sqlx-cli takes its own, different lock: do not run both at once.)
//!
//! Checksums are verified here first, so an edited applied migration is an
//! error naming its file before anything runs.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection as _};

use crate::error::{Error, Result};
use crate::files::{self, MigrationFile};

/// sqlx's ledger table, so sqlx-cli reads the same history.
pub const LEDGER: &str = "_sqlx_migrations";

/// Where and how migrations run.
#[derive(Clone)]
pub struct Connection {
    /// Connection URL (`postgres://...`); never printed.
    url: String,
    /// Longest wait for a row or table lock before a statement fails (default 5 s),
    /// so a migration never queues behind a long transaction while blocking writers.
    pub lock_timeout: Duration,
    /// Longest any one statement may run (default 15 min; index builds on big tables need more).
    pub statement_timeout: Duration,
    /// Longest wait for another migrator to finish (default 60 s).
    pub lock_wait: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the password: leave it out.
        f.debug_struct("Connection")
            .field("lock_timeout", &self.lock_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_wait", &self.lock_wait)
            .finish_non_exhaustive()
    }
}

/// One migration's state in [`status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Version.
    pub version: i64,
    /// Description (the file name's words).
    pub description: String,
    /// Recorded in the ledger.
    pub applied: bool,
    /// Applied with other content than the file has now.
    pub checksum_mismatch: bool,
}

impl Connection {
    /// Migrations against `url` with the default timeouts.
    pub fn new(url: impl Into<String>) -> Connection {
        Connection {
            url: url.into(),
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15 * 60),
            lock_wait: Duration::from_secs(60),
        }
    }

    /// A new connection with the session's timeouts set.
    pub async fn connect(&self) -> Result<PgConnection> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let options = PgConnectOptions::from_str(&self.url)?
            .application_name("reposmith-migrate")
            .options([
                ("lock_timeout", ms(self.lock_timeout)),
                ("statement_timeout", ms(self.statement_timeout)),
            ]);
        Ok(options.connect().await?)
    }

    /// Connects and takes the migration lock, waiting at most `lock_wait`.
    async fn locked(&self) -> Result<PgConnection> {
        let mut conn = self.connect().await?;
        let key: i64 = sqlx::query_scalar(
            "SELECT ('x' || substr(md5('reposmith-migrate:' || current_database() || ':' \
             || coalesce(current_schema(), '')), 1, 16))::bit(64)::bigint",
        )
        .fetch_one(&mut conn)
        .await?;
        let deadline = Instant::now() + self.lock_wait;
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut conn)
                .await?;
            if got {
                return Ok(conn);
            }
            if Instant::now() >= deadline {
                return Err(Error::LockTimeout(self.lock_wait));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Applies every pending migration in `dir`; returns the versions applied.
pub async fn apply(dir: &std::path::Path, db: &Connection) -> Result<Vec<i64>> {
    let files = files::load(dir)?;
    let mut conn = db.locked().await?;
    let before = verify(&mut conn, &files).await?;
    let migrator = migrator(&files);
    let outcome = migrator.run(&mut conn).await;
    outcome.map_err(|e| migrate_error(e, &files))?;
    let after = applied(&mut conn).await?;
    conn.close().await?;
    Ok(after
        .keys()
        .filter(|v| !before.contains_key(v))
        .copied()
        .collect())
}

/// Reverts applied migrations newer than `target`, or only the newest one
/// when `target` is `None`; returns the versions reverted, newest first.
pub async fn revert(
    dir: &std::path::Path,
    db: &Connection,
    target: Option<i64>,
) -> Result<Vec<i64>> {
    let files = files::load(dir)?;
    let mut conn = db.locked().await?;
    let applied = verify(&mut conn, &files).await?;
    let mut versions: Vec<i64> = applied.keys().copied().collect();
    versions.sort_unstable();
    let target = match target {
        Some(target) => target,
        None => versions.iter().rev().nth(1).copied().unwrap_or(0),
    };
    let migrator = migrator(&files);
    migrator
        .undo(&mut conn, target)
        .await
        .map_err(|e| migrate_error(e, &files))?;
    conn.close().await?;
    Ok(versions.into_iter().rev().filter(|v| *v > target).collect())
}

/// Every migration in `dir` with its state in the database.
pub async fn status(dir: &std::path::Path, db: &Connection) -> Result<(Vec<Status>, Vec<i64>)> {
    let files = files::load(dir)?;
    let mut conn = db.connect().await?;
    let applied = applied(&mut conn).await?;
    conn.close().await?;
    let rows = files
        .iter()
        .filter(|f| f.migration.migration_type.is_up_migration())
        .map(|f| {
            let recorded = applied.get(&f.migration.version);
            Status {
                version: f.migration.version,
                description: f.migration.description.to_string(),
                applied: recorded.is_some(),
                checksum_mismatch: recorded.is_some_and(|c| **c != *f.migration.checksum),
            }
        })
        .collect();
    let known: Vec<i64> = files.iter().map(|f| f.migration.version).collect();
    let missing = applied
        .keys()
        .filter(|v| !known.contains(v))
        .copied()
        .collect();
    Ok((rows, missing))
}

fn migrator(files: &[MigrationFile]) -> Migrator {
    let mut migrator =
        Migrator::with_migrations(files.iter().map(|f| f.migration.clone()).collect());
    migrator.set_locking(false);
    migrator
}

/// Versions and checksums in the ledger (empty when it does not exist yet).
async fn applied(conn: &mut PgConnection) -> Result<HashMap<i64, Vec<u8>>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(LEDGER)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The ledger, after checking every applied migration still has its file and content.
async fn verify(conn: &mut PgConnection, files: &[MigrationFile]) -> Result<HashMap<i64, Vec<u8>>> {
    let applied = applied(conn).await?;
    for (version, checksum) in &applied {
        let file = files
            .iter()
            .find(|f| {
                f.migration.version == *version && f.migration.migration_type.is_up_migration()
            })
            .ok_or(Error::MissingFile(*version))?;
        if *file.migration.checksum != **checksum {
            return Err(Error::ChecksumMismatch {
                version: *version,
                path: file.path.clone(),
            });
        }
    }
    Ok(applied)
}

fn migrate_error(error: MigrateError, files: &[MigrationFile]) -> Error {
    let path_of = |version: i64| {
        files
            .iter()
            .find(|f| f.migration.version == version)
            .map(|f| f.path.clone())
            .unwrap_or_default()
    };
    match error {
        MigrateError::ExecuteMigration(source, version) => Error::Execute {
            version,
            path: path_of(version),
            source,
        },
        MigrateError::VersionMismatch(version) => Error::ChecksumMismatch {
            version,
            path: path_of(version),
        },
        MigrateError::VersionMissing(version) => Error::MissingFile(version),
        MigrateError::Dirty(version) => Error::Dirty(version),
        MigrateError::Execute(e) => Error::Database(e),
        other => Error::Migrate(other),
    }
}
