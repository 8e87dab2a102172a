//! `apply`, `status` and `revert` through sqlx's migration machinery for
//! Postgres (its [`Migrate`] implementation: the `_sqlx_migrations` ledger,
//! one transaction per migration unless `-- no-transaction`, the ledger row
//! written in the same transaction), on one dedicated connection with
//! `lock_timeout` and `statement_timeout` set.
//!
//! The loop over migrations is the one `sqlx::migrate::Migrator::run` and
//! `undo` run, driven here rather than through `Migrator` because
//! `Migrator::run` takes an `Acquire` whose future is not `Send` (rustc's
//! higher-ranked lifetime limitation), so it could not run in a spawned
//! task; and so that errors name files.
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
//!
//! Least privilege: migrations run as the schema owner, the application as
//! a role that cannot run DDL. [`Connection::for_config`] takes the owner's
//! URL from `PgConfig::migration_url` (`REPOSMITH_MIGRATION_DATABASE_URL`),
//! and the CLI reads that variable before `DATABASE_URL`. The URL is held to
//! the backend's plaintext policy (see `reposmith_core::tls`): to a host
//! other than this machine it needs `sslmode=require` or stronger unless
//! [`Connection::allow_plaintext`] (`REPOSMITH_ALLOW_PLAINTEXT=1`).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::migrate::{Migrate, MigrateError};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection as _};

use crate::error::{Error, Result};
use crate::files::{self, MigrationFile};

/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The migration lock's key: one per database and ledger schema. Public
/// for the suite's `isolationtester` spec, which runs this text; not a
/// stable API.
#[doc(hidden)]
pub const LOCK_KEY_SQL: &str = "SELECT ('x' || substr(md5('reposmith-migrate:' || \
     current_database() || ':' || coalesce(current_schema(), '')), 1, 16))::bit(64)::bigint";

/// One attempt at the migration lock (the caller loops until its deadline).
/// Public for the suite's `isolationtester` spec; not a stable API.
#[doc(hidden)]
pub const TRY_LOCK_SQL: &str = "SELECT pg_try_advisory_lock($1)";

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
    /// Connect without TLS to a host other than this machine (default
    /// `false`: such a URL is refused, as `PgConfig::validate` refuses it;
    /// see `reposmith_core::tls`).
    pub allow_plaintext: bool,
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
            allow_plaintext: false,
        }
    }

    /// Migrations with the URL `config` names for them: its
    /// [`migration_url`](reposmith_postgres::PgConfig::migration_url) (the
    /// schema owner's, `REPOSMITH_MIGRATION_DATABASE_URL`) when set, else
    /// its application URL; and its plaintext setting.
    pub fn for_config(config: &reposmith_postgres::PgConfig) -> Connection {
        let mut connection = Connection::new(config.migration_connection_url().expose());
        connection.allow_plaintext = config.allow_plaintext;
        connection
    }

    /// A new connection with the session's timeouts set.
    pub async fn connect(&self) -> Result<PgConnection> {
        // The backend's plaintext policy, so migrations (which carry the
        // owner's password) are held to the same rule as the application.
        reposmith_postgres::PgConfig::new(self.url.as_str())
            .allow_plaintext(self.allow_plaintext)
            .validate()
            .map_err(Error::Config)?;
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let options = PgConnectOptions::from_str(&self.url)?
            .application_name("reposmith-migrate")
            .options([
                ("lock_timeout", ms(self.lock_timeout)),
                ("statement_timeout", ms(self.statement_timeout)),
            ]);
        // Bounded like every other wait: an unreachable server is an error, not a hang.
        match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(connected) => Ok(connected?),
            Err(_) => Err(Error::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting took longer than {CONNECT_TIMEOUT:?}"),
            )))),
        }
    }

    /// Connects and takes the migration lock, waiting at most `lock_wait`.
    async fn locked(&self) -> Result<PgConnection> {
        let mut conn = self.connect().await?;
        let key: i64 = sqlx::query_scalar(LOCK_KEY_SQL)
            .fetch_one(&mut conn)
            .await?;
        let deadline = Instant::now() + self.lock_wait;
        loop {
            let got: bool = sqlx::query_scalar(TRY_LOCK_SQL)
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
    let applied = prepare(&mut conn, &files).await?;
    refuse_out_of_order(&files, &applied)?;
    let mut done = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.migration.migration_type.is_up_migration())
    {
        if applied.contains_key(&file.migration.version) {
            continue;
        }
        run_one(&mut conn, db, file, &files, false).await?;
        done.push(file.migration.version);
    }
    conn.close().await?;
    Ok(done)
}

/// Generated migrations are diffs against the previous snapshot: one that
/// arrives below an already applied version (a branch merged late) was
/// generated against another history, so it is refused, naming it.
fn refuse_out_of_order<V>(files: &[MigrationFile], applied: &HashMap<i64, V>) -> Result<()> {
    let Some(highest) = applied.keys().max().copied() else {
        return Ok(());
    };
    let late = files.iter().find(|f| {
        f.migration.migration_type.is_up_migration()
            && f.migration.version < highest
            && !applied.contains_key(&f.migration.version)
    });
    match late {
        Some(file) => Err(Error::BadFile {
            path: file.path.clone(),
            message: format!(
                "is pending but version {highest} is already applied: it was generated \
                 against another history; renumber it above {highest} and regenerate"
            ),
        }),
        None => Ok(()),
    }
}

/// Applies one migration. A no-transaction migration (a `CREATE INDEX
/// CONCURRENTLY`) runs with `lock_timeout` lifted: its build waits for every
/// older transaction in the database to end, and that wait blocks no writer
/// (its `SHARE UPDATE EXCLUSIVE` lock does not conflict with writes), so
/// failing it after a few seconds would only leave an INVALID index behind.
/// `statement_timeout` still bounds it.
async fn run_one(
    conn: &mut PgConnection,
    db: &Connection,
    file: &MigrationFile,
    files: &[MigrationFile],
    down: bool,
) -> Result<()> {
    let no_tx = file.migration.no_tx;
    if no_tx {
        sqlx::raw_sql("SET lock_timeout = 0")
            .execute(&mut *conn)
            .await?;
    }
    let outcome = if down {
        conn.revert(LEDGER, &file.migration).await.map(|_| ())
    } else {
        conn.apply(LEDGER, &file.migration).await.map(|_| ())
    };
    if no_tx {
        let restore = format!("SET lock_timeout = {}", db.lock_timeout.as_millis());
        sqlx::raw_sql(sqlx::AssertSqlSafe(restore))
            .execute(&mut *conn)
            .await?;
    }
    outcome.map_err(|e| match e {
        // Name the file that ran: the down file of a revert.
        MigrateError::ExecuteMigration(source, version) => Error::Execute {
            version,
            path: file.path.clone(),
            source,
        },
        other => migrate_error(other, files),
    })
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
    let applied = prepare(&mut conn, &files).await?;
    let mut versions: Vec<i64> = applied.keys().copied().collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    let target = target.unwrap_or_else(|| versions.get(1).copied().unwrap_or(0));
    let mut done = Vec::new();
    for version in versions.into_iter().filter(|v| *v > target) {
        let down = files
            .iter()
            .find(|f| {
                f.migration.version == version && f.migration.migration_type.is_down_migration()
            })
            .ok_or_else(|| Error::Usage(format!("migration {version} has no .down.sql file")))?;
        run_one(&mut conn, db, down, &files, true).await?;
        done.push(version);
    }
    conn.close().await?;
    Ok(done)
}

/// The ledger ready and consistent with the files: created if absent, no
/// dirty (failed no-transaction) migration, every applied migration still
/// present with its content. Returns it.
async fn prepare(
    conn: &mut PgConnection,
    files: &[MigrationFile],
) -> Result<HashMap<i64, Vec<u8>>> {
    conn.ensure_migrations_table(LEDGER)
        .await
        .map_err(|e| migrate_error(e, files))?;
    if let Some(version) = conn
        .dirty_version(LEDGER)
        .await
        .map_err(|e| migrate_error(e, files))?
    {
        return Err(Error::Dirty(version));
    }
    verify(conn, files).await
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

/// sqlx's error as ours, naming the up file of the version it is about
/// (checksums are of up files). A failed statement is mapped by
/// [`run_one`], which knows which file ran.
fn migrate_error(error: MigrateError, files: &[MigrationFile]) -> Error {
    let path_of = |version: i64| {
        files
            .iter()
            .find(|f| {
                f.migration.version == version && f.migration.migration_type.is_up_migration()
            })
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
