//! Choosing, per repository, where its reads go and which session they follow.

use reposmith_core::{Entity, Error, Result};
use sqlx::Row;

use super::{ReadPreference, Session, WalPosition};
use crate::executor::Executor;
use crate::{PgBackend, PgRepository};

/// The position covering every commit that has returned: the insert
/// position, read on any connection of the primary (it only grows). Not
/// the flush position: a commit under `synchronous_commit = off` (set by
/// its own transaction, invisible from here) returns before its record is
/// flushed. The insert position may be a little ahead of what any commit
/// needs, which costs a read at most the WAL writer's next flush.
const COMMITTED_SQL: &str = "SELECT pg_current_wal_insert_lsn()::text";

/// Marks a session's position unknown when dropped armed: a write or
/// COMMIT cut (its future dropped) after it was sent may have committed
/// before its position was read. Disarmed once the position is recorded.
#[must_use = "dropping it armed marks the session's position unknown"]
pub(crate) struct TrackGuard(Option<Session>);

impl TrackGuard {
    pub(crate) fn new(session: Option<Session>) -> Self {
        TrackGuard(session)
    }

    /// The position was recorded (or nothing was committed).
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.lost_track();
        }
    }
}

/// Whether a write that ended with `outcome` may have committed: yes
/// unless its error proves nothing did (refused before or by the server,
/// rolled back).
pub(crate) fn may_have_committed<T>(outcome: &Result<T>) -> bool {
    !matches!(
        outcome,
        Err(Error::Conflict { .. }
            | Error::ForeignKey { .. }
            | Error::InvalidInput { .. }
            | Error::StaleVersion { .. }
            | Error::NotFound { .. }
            | Error::PoolTimeout { .. }
            | Error::Config { .. }
            | Error::TooLarge { .. }
            | Error::ExceedsCapacity { .. }
            | Error::Embedding { .. }
            | Error::Retryable { .. }
            | Error::Connect { .. }
            | Error::Authentication { .. }
            | Error::Unavailable { .. })
    )
}

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

    /// Whether this repository's pool reads run on the primary (no
    /// replicas, or pinned there by the call or the entity).
    pub(crate) fn reads_on_primary(&self) -> bool {
        self.exec.backend().replicas.is_none() || self.route.primary_only(E::SCHEMA.reads)
    }

    /// A twin reading the primary, for cache fills: a row read from a
    /// lagging replica after an invalidation would be cached stale.
    pub(crate) fn for_cache_fill(&self) -> Self {
        self.clone().on_primary()
    }

    /// Armed before a pool write in a session (see [`TrackGuard`]).
    pub(crate) fn track_guard(&self) -> TrackGuard {
        match &self.exec {
            Executor::Pool(_) => TrackGuard::new(self.route.session.clone()),
            Executor::Unit(..) => TrackGuard::new(None),
        }
    }

    /// After a pool write that may have committed: records the commit's
    /// position in the repository's session, if it has one.
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
