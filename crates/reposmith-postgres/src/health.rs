//! What `ping` learns about a PostgreSQL server.

use std::fmt;
use std::time::Duration;

/// Health and versions of a PostgreSQL server, as seen through the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgHealth {
    /// Host, port and database, without credentials.
    pub target: String,
    /// `server_version`, e.g. `16.14`.
    pub server_version: String,
    /// pgvector version installed in this database (`CREATE EXTENSION vector` done).
    pub pgvector_installed: Option<String>,
    /// pgvector version the server could install, if its files are present.
    pub pgvector_available: Option<String>,
    /// Time for the probe query, acquire included.
    pub round_trip: Duration,
    /// Connections the pool holds now.
    pub pool_size: u32,
    /// Of those, how many are idle.
    pub pool_idle: usize,
}

impl fmt::Display for PgHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pgvector = match (&self.pgvector_installed, &self.pgvector_available) {
            (Some(installed), _) => format!("pgvector {installed}"),
            (None, Some(available)) => format!("pgvector {available} available, not installed"),
            (None, None) => "pgvector not available".to_owned(),
        };
        write!(
            f,
            "PostgreSQL {} at {}: {pgvector}; round trip {:?}; pool {} open, {} idle",
            self.server_version, self.target, self.round_trip, self.pool_size, self.pool_idle
        )
    }
}
