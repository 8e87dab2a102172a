//! Names of the stores reposmith talks to, used in errors, health reports and tracing.

use std::fmt;

/// A store reposmith can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// PostgreSQL (with pgvector).
    Postgres,
    /// MongoDB, or a server speaking its wire protocol.
    Mongo,
    /// Redis.
    Redis,
}

impl Backend {
    /// The lower-case name used in messages and as the `db.system` tracing field.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Mongo => "mongodb",
            Backend::Redis => "redis",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
