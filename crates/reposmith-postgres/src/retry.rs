//! Retried units of work on PostgreSQL: the core [`RetryPolicy`] loop,
//! with units begun at the backend's configured isolation level (or one
//! given per call).
//!
//! The server aborts a unit as retryable to keep it serializable or to
//! break a deadlock (SQLSTATE 40001, 40P01); the transaction is then known
//! to have rolled back, so running the unit again cannot apply anything
//! twice. A lost connection after COMMIT
//! ([`Error::CommitOutcomeUnknown`](reposmith_core::Error::CommitOutcomeUnknown))
//! is never retried.

use reposmith_core::repository::BoxFuture;
use reposmith_core::retry::retry_units;
use reposmith_core::{Result, RetryPolicy};

use crate::{IsolationLevel, PgBackend, PgUnitOfWork};

impl PgBackend {
    /// Runs `work` in a unit of work at the configured
    /// [`transaction_isolation`](crate::PgConfig::transaction_isolation)
    /// (SERIALIZABLE unless set) and commits it; if the server aborts the
    /// unit as a serialization failure or deadlock, in a statement or at
    /// COMMIT, rolls back, waits a jittered backoff and runs `work` again,
    /// up to `policy.max_attempts` times. Any other error ends it.
    ///
    /// `work` may run several times, so it must not have effects outside the
    /// transaction it is given.
    ///
    /// ```no_run
    /// # use reposmith_core::RetryPolicy;
    /// # async fn run(pg: reposmith_postgres::PgBackend) -> reposmith_core::Result<()> {
    /// let moved: u64 = pg
    ///     .transaction(RetryPolicy::default(), |uow| {
    ///         Box::pin(async move {
    ///             // read, decide, write: all through uow.repo::<E>()
    ///             Ok(1)
    ///         })
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<T, F>(&self, policy: RetryPolicy, work: F) -> Result<T>
    where
        F: for<'u> FnMut(&'u PgUnitOfWork) -> BoxFuture<'u, Result<T>>,
    {
        self.transaction_with(self.transaction_isolation, policy, work)
            .await
    }

    /// [`transaction`](Self::transaction) with units at `isolation`.
    pub async fn transaction_with<T, F>(
        &self,
        isolation: IsolationLevel,
        policy: RetryPolicy,
        work: F,
    ) -> Result<T>
    where
        F: for<'u> FnMut(&'u PgUnitOfWork) -> BoxFuture<'u, Result<T>>,
    {
        retry_units(&policy, || self.begin_with(isolation), work).await
    }
}
