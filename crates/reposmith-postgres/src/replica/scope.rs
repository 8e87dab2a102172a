//! Choosing, per repository, where its reads go and which session they follow.

use reposmith_core::{Entity, Error, Result};
use sqlx::Row;

use super::{ReadPreference, Session, WalPosition};
use crate::executor::Executor;
use crate::{PgBackend, PgRepository};

/// The position a commit that already returned is covered by: the flush
/// position (a synchronous commit returns once its record is flushed), or
/// with `synchronous_commit = off` the insert position (its record may not
/// be flushed yet). Read on any connection of the primary: both only grow.
const COMMITTED_SQL: &str = "SELECT (CASE WHEN current_setting('synchronous_commit') = 'off' \
     THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_flush_lsn() END)::text";

impl<E: Entity> PgRepository<E> {
    /// This repository with its pool reads on the primary, whatever the
    /// entity's `#[repo(reads = "..")]` says: for a read that must see
    /// every commit (of anyone) so far. Writes and units always run there.
    pub fn on_primary(mut self) -> Self {
        self.route.pin = Some(ReadPreference::Primary);
        self
    }

    /// This repository with its pool reads on a replica even when the
    /// entity declares `#[repo(reads = "primary")]`, and even on a replica
    /// lagging more than `max_lag` (the caller accepts staleness: reports,
    /// exports). Without a replica up, reads follow the configured fallback.
    pub fn on_replica(mut self) -> Self {
        self.route.pin = Some(ReadPreference::Replica);
        self
    }

    /// This repository in `session`: its writes record their commit's WAL
    /// position in the session, and its reads on a replica wait until the
    /// replica has replayed the session's latest position (at most
    /// `read_your_writes_timeout`, then they run on the primary). On a unit
    /// of work's repository, the unit records its commit in the session.
    pub fn in_session(mut self, session: &Session) -> Self {
        if let Executor::Unit(shared, _) = &self.exec {
            shared.follow(session);
        }
        self.route.session = Some(session.clone());
        self
    }

    /// A twin reading the primary, for cache fills: a row read from a
    /// lagging replica after an invalidation would be cached stale.
    pub(crate) fn for_cache_fill(&self) -> Self {
        self.clone().on_primary()
    }

    /// After a committed pool write: records the commit's position in the
    /// repository's session, if it has one.
    pub(crate) async fn track_commit(&self) {
        if let (Some(session), Executor::Pool(backend)) = (&self.route.session, &self.exec) {
            backend.track_commit(session).await;
        }
    }
}

impl PgBackend {
    /// Records in `session` the position covering every commit so far
    /// (one round trip on the primary). When that position cannot be read
    /// the session's reads go to the primary from then on: the write is
    /// committed, so failing the call would invite a duplicate retry.
    pub(crate) async fn track_commit(&self, session: &Session) {
        match self.committed_position().await {
            Ok(position) => session.observe(position),
            Err(error) => {
                tracing::warn!(target: "reposmith.replica", %error,
                    "the commit's WAL position could not be read: the session reads the primary");
                session.lost_track();
            }
        }
    }

    /// The primary's position covering every commit that has returned.
    pub async fn committed_position(&self) -> Result<WalPosition> {
        let mut connection = self.acquire().await?;
        let limit = self
            .statement_timeout()
            .unwrap_or(std::time::Duration::from_secs(30));
        let look = sqlx::raw_sql(COMMITTED_SQL).fetch_one(&mut *connection);
        let outcome = tokio::time::timeout(limit, look)
            .await
            .map_err(|_| Error::Timeout {
                backend: reposmith_core::Backend::Postgres,
                operation: "reading the WAL position",
                after: limit,
            })?;
        connection.settle(&outcome);
        let text: String = outcome
            .and_then(|row| row.try_get(0))
            .map_err(|e| self.map_error(e))?;
        text.parse()
    }
}
