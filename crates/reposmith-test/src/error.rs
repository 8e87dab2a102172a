//! [`Error`]: why a test's databases could not be set up or removed.

use std::path::PathBuf;

/// Why `#[reposmith::test]` could not prepare or remove a test's stores.
/// Setup errors fail the test before its body runs, naming what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The test needs a backend whose URL variable is not set.
    #[error("the test asks for {backend} but {variable} is not set")]
    NotConfigured {
        /// The backend (`postgres`, `mongo`, `redis`).
        backend: &'static str,
        /// The environment variable that would configure it.
        variable: &'static str,
    },
    /// The PostgreSQL role may not create databases.
    #[error(
        "role {role:?} may not create databases, which every test database needs: \
         `ALTER ROLE {role} CREATEDB` as a superuser, or point \
         REPOSMITH_MIGRATION_DATABASE_URL at a role that may"
    )]
    CannotCreateDatabase {
        /// The role the harness connected as.
        role: String,
    },
    /// The migrations directory named by `migrations = ".."` does not exist.
    #[error("migrations directory {} does not exist", .0.display())]
    NoMigrations(PathBuf),
    /// A fixture file could not be read or applied.
    #[error("fixture {}: {reason}", .path.display())]
    Fixture {
        /// The fixture file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Another process held the template's build lock for longer than the wait.
    #[error("waited {0:?} for another process to build the template database")]
    TemplateLockTimeout(std::time::Duration),
    /// Applying the migrations (to the template or the MongoDB database) failed.
    #[error("migrations: {0}")]
    Migrate(#[from] reposmith_migrate::Error),
    /// A PostgreSQL statement of the harness failed.
    #[error("postgresql: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A backend failed (connecting the store, MongoDB, Redis).
    #[error(transparent)]
    Backend(#[from] reposmith_core::Error),
    /// A connection URL that cannot be parsed.
    #[error("{variable} is not a valid URL: {reason}")]
    BadUrl {
        /// The variable it came from.
        variable: &'static str,
        /// The parser's complaint (the URL itself is not repeated: it may hold a password).
        reason: String,
    },
}

/// The harness's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
