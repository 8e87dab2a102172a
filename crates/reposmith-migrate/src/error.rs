//! The one error type of the crate: every failure names the file, table or
//! migration it is about.

use std::path::PathBuf;

/// What went wrong while generating, applying or checking migrations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The diff contains destructive steps and `--allow-destructive` was not given.
    #[error(
        "refusing destructive changes (rerun with --allow-destructive to generate them):\n  - {}",
        .0.join("\n  - ")
    )]
    Destructive(Vec<String>),
    /// A change the generator cannot express; write that migration by hand.
    #[error("unsupported change: {0}")]
    Unsupported(String),
    /// Reading or writing a file.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The snapshot file is not valid JSON of this crate's model.
    #[error("{}: invalid snapshot: {source}", .path.display())]
    Snapshot {
        /// The snapshot file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A migration file name or content that cannot be used.
    #[error("{}: {message}", .path.display())]
    BadFile {
        /// The migration file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An applied migration whose file changed afterwards.
    #[error(
        "migration {version} was applied with other content: {} was edited after it ran \
         (restore it, or write a new migration)",
        .path.display()
    )]
    ChecksumMismatch {
        /// The migration's version.
        version: i64,
        /// Its up file.
        path: PathBuf,
    },
    /// The database has applied a migration that no file describes.
    #[error("migration {0} is applied in the database but missing from the migrations directory")]
    MissingFile(i64),
    /// A migration failed and was recorded as failed (only a no-transaction
    /// migration can leave that state).
    #[error("migration {0} is marked failed (dirty) in the ledger: repair it by hand")]
    Dirty(i64),
    /// A migration's SQL failed; its transaction was rolled back.
    #[error("migration {version} ({}) failed: {source}", .path.display())]
    Execute {
        /// The migration's version.
        version: i64,
        /// The file that ran: the `.up.sql` file when applying, the
        /// `.down.sql` file when reverting.
        path: PathBuf,
        /// The database error.
        source: sqlx::Error,
    },
    /// Another migrator held the lock for longer than the wait allowed.
    #[error("another migration run held the lock for more than {0:?}")]
    LockTimeout(std::time::Duration),
    /// Any other database error.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Any other migrator error.
    #[error("migrator: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A MongoDB error outside a migration's commands (ledger, lock).
    #[cfg(feature = "mongo")]
    #[error("mongodb: {0}")]
    Mongo(mongodb::error::Error),
    /// A command of a Mongo migration failed; the commands before it ran
    /// (MongoDB has no transactional DDL) and a rerun continues safely.
    #[cfg(feature = "mongo")]
    #[error("mongo migration {version} ({}) failed: {source}", .path.display())]
    MongoCommand {
        /// The migration's version.
        version: i64,
        /// Its file.
        path: PathBuf,
        /// The server's error.
        source: mongodb::error::Error,
    },
    /// A Mongo migration's `backfill` step stopped: its time bound passed
    /// or the server refused an update. The documents it changed stay
    /// changed; a rerun continues with the rest.
    #[cfg(feature = "mongo")]
    #[error(
        "mongo migration {version} ({}): backfill of {collection}.{field} stopped after {done} documents: {reason}",
        .path.display()
    )]
    Backfill {
        /// The migration's version.
        version: i64,
        /// Its file.
        path: PathBuf,
        /// The collection.
        collection: String,
        /// The key being set.
        field: String,
        /// Documents changed before it stopped.
        done: u64,
        /// Why it stopped.
        reason: String,
    },
    /// Bad command-line use.
    #[error("{0}")]
    Usage(String),
    /// The connection settings are refused before connecting: a URL that
    /// would go unencrypted to another machine (see `reposmith_core::tls`),
    /// an unparsable URL. The message names the URL without its password.
    #[error("{0}")]
    Config(reposmith_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error about `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
