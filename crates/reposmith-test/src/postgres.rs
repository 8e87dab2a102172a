//! PostgreSQL: one template database per set of migrations, one clone of it
//! per test.
//!
//! The template `reposmith_tpl_<hash>` is keyed by a hash of the migration
//! files (names and contents, line endings normalised as the migrator
//! does), so editing a migration builds a new template and an unchanged set
//! reuses the old one. It is built once, under a session advisory lock on a
//! key from the same hash, so nextest's process per test and `cargo test`'s
//! threads all wait for one builder; the migrations run through
//! `reposmith-migrate`'s own [`apply`](reposmith_migrate::apply()) (its
//! ledger, its checksums). The last step of a build is a comment on the
//! template saying it is complete, with a build id: a template without it
//! (its builder died half way) is dropped and built again.
//!
//! Each test then costs one `CREATE DATABASE <test> TEMPLATE <template>`
//! and, after it passes, one `DROP DATABASE .. WITH (FORCE)`.
//!
//! The harness connects as the role migrations use
//! (`REPOSMITH_MIGRATION_DATABASE_URL`, else `DATABASE_URL`), which must
//! have `CREATEDB`; without it setup fails with
//! [`Error::CannotCreateDatabase`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use reposmith_postgres::{PgConfig, quote_ident, quote_literal};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

use crate::error::{Error, Result};
use crate::names::TEMPLATE_PREFIX;

/// The longest wait for another process's template build.
pub const TEMPLATE_LOCK_WAIT: Duration = Duration::from_secs(180);

/// Longest wait for a dropped test database's sessions to exit on their
/// own before `DROP DATABASE .. WITH (FORCE)` ends them.
pub const SESSIONS_GONE_WAIT: Duration = Duration::from_millis(500);

/// Longest wait to connect; every harness wait is bounded.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The start of a complete template's comment.
const COMPLETE: &str = "reposmith-test template complete; build ";

/// Bumped when the way templates are built changes, so old templates are
/// not reused.
const FORMAT: &str = "reposmith-test template v1";

/// A connection to the server as the role that creates and drops the
/// test databases.
pub struct PgAdmin {
    conn: PgConnection,
    /// The admin URL; its database is replaced to reach other databases.
    url: url::Url,
    allow_plaintext: bool,
}

impl std::fmt::Debug for PgAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL holds a password.
        f.debug_struct("PgAdmin").finish_non_exhaustive()
    }
}

/// A template database, as [`ensure_template`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The database's name.
    pub name: String,
    /// The id of the build that made it (a new one each build).
    pub build: String,
    /// True when this call built it; false when it was reused.
    pub built: bool,
}

impl PgAdmin {
    /// Connects with `config`'s migration URL (the schema owner's) or, if
    /// unset, its application URL.
    pub async fn connect(config: &PgConfig) -> Result<PgAdmin> {
        let raw = config.migration_connection_url().expose();
        let variable = match config.migration_url {
            Some(_) => "REPOSMITH_MIGRATION_DATABASE_URL",
            None => "DATABASE_URL",
        };
        let url = url::Url::parse(raw).map_err(|e| Error::BadUrl {
            variable,
            reason: e.to_string(),
        })?;
        let options = PgConnectOptions::from_str(raw)?
            .application_name("reposmith-test")
            .options([("statement_timeout", "120s")]);
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
            Ok(conn) => conn?,
            Err(_) => {
                return Err(Error::Postgres(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting took longer than {CONNECT_TIMEOUT:?}"),
                ))));
            }
        };
        Ok(PgAdmin {
            conn,
            url,
            allow_plaintext: config.allow_plaintext,
        })
    }

    /// `url` (a URL of the same server) with its database replaced by `database`.
    pub fn url_of(url: &str, database: &str) -> Result<String> {
        let mut url = url::Url::parse(url).map_err(|e| Error::BadUrl {
            variable: "DATABASE_URL",
            reason: e.to_string(),
        })?;
        url.set_path(&format!("/{database}"));
        Ok(url.into())
    }

    /// The admin URL with `database` as its database.
    fn admin_url_of(&self, database: &str) -> String {
        let mut url = self.url.clone();
        url.set_path(&format!("/{database}"));
        url.into()
    }

    /// The role connected.
    pub async fn role(&mut self) -> Result<String> {
        Ok(sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut self.conn)
            .await?)
    }

    /// Runs `sql`, a statement the harness built from names it made.
    async fn run(&mut self, sql: String) -> Result<()> {
        match sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut self.conn)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if sqlstate(&e).as_deref() == Some("42501") => {
                Err(Error::CannotCreateDatabase {
                    role: self.role().await.unwrap_or_else(|_| "?".to_owned()),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `CREATE DATABASE name TEMPLATE template`. Retries briefly while the
    /// template is "being accessed by other users" (SQLSTATE 55006: another
    /// session is connected to it, e.g. a cleanup peeking in).
    pub async fn clone_template(&mut self, name: &str, template: &str) -> Result<()> {
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}",
            quote_ident(name),
            quote_ident(template)
        );
        let mut tries = 0;
        loop {
            match self.run(sql.clone()).await {
                Err(Error::Postgres(e))
                    if sqlstate(&e).as_deref() == Some("55006") && tries < 50 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// `DROP DATABASE IF EXISTS name WITH (FORCE)`: the test's connections
    /// that are still open are ended.
    ///
    /// First it waits (at most [`SESSIONS_GONE_WAIT`]) for the sessions a
    /// just-closed pool leaves to exit: a server process ends a moment after
    /// its client hung up, and `DROP DATABASE` that finds one still there
    /// sleeps 100 ms before it looks again, which measured as most of a
    /// test's teardown.
    pub async fn drop_database(&mut self, name: &str) -> Result<()> {
        let deadline = Instant::now() + SESSIONS_GONE_WAIT;
        while Instant::now() < deadline {
            let sessions: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(name)
                    .fetch_one(&mut self.conn)
                    .await?;
            if sessions == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
        self.run(sql).await
    }

    /// Every database whose name starts with `prefix`.
    pub async fn databases_like(&mut self, prefix: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
        )
        .bind(prefix)
        .fetch_all(&mut self.conn)
        .await?)
    }

    /// The comment on database `name`: `None` when it does not exist,
    /// `Some(None)` when it has no comment.
    pub async fn comment_of(&mut self, name: &str) -> Result<Option<Option<String>>> {
        Ok(sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
        )
        .bind(name)
        .fetch_optional(&mut self.conn)
        .await?)
    }

    /// Runs the SQL fixture `path` in database `database`, as the admin role.
    pub async fn apply_sql_fixture(&self, database: &str, path: &Path) -> Result<()> {
        let fixture = |reason: String| Error::Fixture {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fixture(e.to_string()))?;
        let url = self.admin_url_of(database);
        let mut conn = PgConnectOptions::from_str(&url)?.connect().await?;
        let outcome = sqlx::raw_sql(AssertSqlSafe(text)).execute(&mut conn).await;
        conn.close().await?;
        outcome.map(drop).map_err(|e| fixture(e.to_string()))
    }

    /// Closes the connection.
    pub async fn close(self) -> Result<()> {
        Ok(self.conn.close().await?)
    }
}

/// The SQLSTATE of a database error.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(e) => e.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The PostgreSQL migration files of `dir` (`*.sql` directly in it), sorted.
fn migration_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |e: std::io::Error| {
        Error::Migrate(reposmith_migrate::Error::Io {
            path: dir.to_owned(),
            source: e,
        })
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "sql") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The template's key: a hash of every migration file's name and content
/// (CRLF read as LF, as the migrator's checksums do); `None` hashes no
/// migrations.
pub fn migrations_hash(dir: Option<&Path>) -> Result<String> {
    let mut hash = Sha256::new();
    hash.update(FORMAT.as_bytes());
    if let Some(dir) = dir {
        for path in migration_files(dir)? {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::Migrate(reposmith_migrate::Error::Io {
                    path: path.clone(),
                    source: e,
                })
            })?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            hash.update([0]);
            hash.update(name.unwrap_or_default().as_bytes());
            hash.update([0]);
            hash.update(text.replace("\r\n", "\n").as_bytes());
        }
    }
    Ok(hash
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The template for the migrations in `dir` (none when `None`), built if
/// it is missing or half built, else reused. See the module docs.
pub async fn ensure_template(admin: &mut PgAdmin, dir: Option<&Path>) -> Result<Template> {
    let hash = migrations_hash(dir)?;
    let name = format!("{TEMPLATE_PREFIX}{hash}");
    // The common case, without the lock: built by an earlier test.
    if let Some(build) = complete_build(admin, &name).await? {
        return Ok(Template {
            name,
            build,
            built: false,
        });
    }
    // The hash's 64 bits as a signed key, as PostgreSQL's bit cast would read them.
    let key = u64::from_str_radix(&hash, 16).map_or(0, |v| i64::from_ne_bytes(v.to_ne_bytes()));
    lock(admin, key).await?;
    let outcome = build_locked(admin, &name, dir).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut admin.conn)
        .await;
    let template = outcome?;
    unlocked?;
    Ok(template)
}

/// The build id of template `name` if it is complete.
async fn complete_build(admin: &mut PgAdmin, name: &str) -> Result<Option<String>> {
    let comment = admin.comment_of(name).await?.flatten();
    Ok(comment.and_then(|c| c.strip_prefix(COMPLETE).map(str::to_owned)))
}

/// Takes the build lock of one template, waiting at most [`TEMPLATE_LOCK_WAIT`].
async fn lock(admin: &mut PgAdmin, key: i64) -> Result<()> {
    let deadline = Instant::now() + TEMPLATE_LOCK_WAIT;
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut admin.conn)
            .await?;
        if got {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::TemplateLockTimeout(TEMPLATE_LOCK_WAIT));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Under the lock: reuse the template another process completed while we
/// waited, or (re)build it.
async fn build_locked(admin: &mut PgAdmin, name: &str, dir: Option<&Path>) -> Result<Template> {
    if let Some(build) = complete_build(admin, name).await? {
        return Ok(Template {
            name: name.to_owned(),
            build,
            built: false,
        });
    }
    // Half built (its builder died) or never built.
    admin.drop_database(name).await?;
    admin
        .run(format!("CREATE DATABASE {}", quote_ident(name)))
        .await?;
    if let Some(dir) = dir {
        let mut connection = reposmith_migrate::Connection::new(admin.admin_url_of(name));
        connection.allow_plaintext = admin.allow_plaintext;
        reposmith_migrate::apply(dir, &connection).await?;
    }
    let build = uuid::Uuid::now_v7().simple().to_string();
    let comment = quote_literal(&format!("{COMPLETE}{build}"));
    admin
        .run(format!(
            "COMMENT ON DATABASE {} IS {comment}",
            quote_ident(name)
        ))
        .await?;
    Ok(Template {
        name: name.to_owned(),
        build,
        built: true,
    })
}
