//! Retried units of work on MongoDB: the core [`RetryPolicy`] loop, with
//! units begun at read concern `snapshot` (or one the caller inside this
//! crate chooses).
//!
//! MongoDB aborts a transaction with the `TransientTransactionError` label
//! on a write conflict with a concurrent transaction, a failover or a
//! connection lost before commit; it is then known not to have committed,
//! so running the unit again cannot apply anything twice. An unknown commit
//! outcome ([`Error::CommitOutcomeUnknown`](reposmith_core::Error::CommitOutcomeUnknown))
//! is settled by resending the commit inside `commit` (see the `unit`
//! module) and never by rerunning the unit. A MongoDB transaction is always
//! snapshot-isolated, so there is no isolation level to choose.

use mongodb::options::ReadConcern;
use reposmith_core::repository::BoxFuture;
use reposmith_core::retry::retry_units;
use reposmith_core::{Result, RetryPolicy};

use crate::{MongoBackend, MongoUnitOfWork};

impl MongoBackend {
    /// Runs `work` in a unit of work and commits it; if MongoDB aborts the
    /// transaction with `TransientTransactionError` — in an operation or at
    /// commit — waits a jittered backoff and runs `work` again in a new
    /// unit, up to `policy.max_attempts` times. Any other error ends it, and
    /// an error returned by `work` rolls the unit back.
    ///
    /// `work` may run several times, so it must not have effects outside the
    /// transaction it is given.
    ///
    /// ```no_run
    /// # use reposmith_core::RetryPolicy;
    /// # async fn run(mongo: reposmith_mongo::MongoBackend) -> reposmith_core::Result<()> {
    /// let moved: u64 = mongo
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
        F: for<'u> FnMut(&'u MongoUnitOfWork) -> BoxFuture<'u, Result<T>>,
    {
        self.retry_transaction(policy, Some(ReadConcern::snapshot()), work)
            .await
    }

    /// [`transaction`](Self::transaction) whose units begin with `read_concern`.
    pub(crate) async fn retry_transaction<T, F>(
        &self,
        policy: RetryPolicy,
        read_concern: Option<ReadConcern>,
        work: F,
    ) -> Result<T>
    where
        F: for<'u> FnMut(&'u MongoUnitOfWork) -> BoxFuture<'u, Result<T>>,
    {
        let begin = || self.begin_with(read_concern.clone());
        retry_units(&policy, begin, work).await
    }
}
