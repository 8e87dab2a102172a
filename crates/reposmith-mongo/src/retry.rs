//! Running a whole unit of work again when MongoDB aborted its transaction
//! with the `TransientTransactionError` label (a write conflict with a
//! concurrent transaction, a failover, a connection lost before commit).
//!
//! Only those aborts are retried: the transaction is known not to have
//! committed, so running the unit again cannot apply anything twice. An
//! unknown commit outcome ([`Error::CommitOutcomeUnknown`](reposmith_core::Error::CommitOutcomeUnknown))
//! is settled by resending the commit inside `commit` (see the `unit`
//! module) and never by rerunning the unit.
//!
//! [`MongoRetryPolicy`] has the fields of the Postgres backend's
//! `RetryPolicy` except its isolation level (a MongoDB transaction is
//! always snapshot-isolated).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::options::ReadConcern;
use reposmith_core::Result;
use reposmith_core::repository::BoxFuture;

use crate::{MongoBackend, MongoUnitOfWork};

/// How a retried unit of work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MongoRetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles for each later one.
    pub base_delay: Duration,
    /// Cap on the backoff.
    pub max_delay: Duration,
}

impl Default for MongoRetryPolicy {
    /// 5 attempts, 10 ms doubling up to 500 ms, with full jitter.
    fn default() -> Self {
        MongoRetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(500),
        }
    }
}

impl MongoRetryPolicy {
    /// Sets the number of attempts (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// A random wait in `[0, min(max_delay, base_delay * 2^(attempt-1))]`:
    /// "full jitter", so units that collided do not collide again in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.max_delay);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // The clock's low bits are noise enough to spread a handful of retries.
        let fraction = f64::from(nanos.wrapping_mul(2_654_435_761) % 1_000_000) / 1_000_000.0;
        ceiling.mul_f64(fraction)
    }
}

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
    /// # use reposmith_mongo::{MongoBackend, MongoRetryPolicy};
    /// # async fn run(mongo: MongoBackend) -> reposmith_core::Result<()> {
    /// let moved: u64 = mongo
    ///     .transaction(MongoRetryPolicy::default(), |uow| {
    ///         Box::pin(async move {
    ///             // read, decide, write: all through uow.repo::<E>()
    ///             Ok(1)
    ///         })
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<T, F>(&self, policy: MongoRetryPolicy, work: F) -> Result<T>
    where
        F: for<'u> FnMut(&'u MongoUnitOfWork) -> BoxFuture<'u, Result<T>>,
    {
        self.retry_transaction(policy, Some(ReadConcern::snapshot()), work)
            .await
    }

    /// [`transaction`](Self::transaction) whose units begin with `read_concern`.
    pub(crate) async fn retry_transaction<T, F>(
        &self,
        policy: MongoRetryPolicy,
        read_concern: Option<ReadConcern>,
        mut work: F,
    ) -> Result<T>
    where
        F: for<'u> FnMut(&'u MongoUnitOfWork) -> BoxFuture<'u, Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match self.attempt(&mut work, read_concern.clone()).await {
                Err(error) if error.is_retryable() && attempt < policy.max_attempts => {
                    tracing::debug!(%error, attempt, "transaction aborted as transient, retrying");
                    tokio::time::sleep(policy.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt<T, F>(&self, work: &mut F, read_concern: Option<ReadConcern>) -> Result<T>
    where
        F: for<'u> FnMut(&'u MongoUnitOfWork) -> BoxFuture<'u, Result<T>>,
    {
        let unit = self.begin_with(read_concern).await?;
        match work(&unit).await {
            Ok(value) => unit.commit().await.map(|()| value),
            Err(error) => {
                // The work's error is what matters; a failed abort leaves
                // the transaction to the server's lifetime limit.
                let _ = unit.rollback().await;
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let policy = MongoRetryPolicy::default();
        for attempt in 1..10 {
            let ceiling = (policy.base_delay * (1 << (attempt - 1))).min(policy.max_delay);
            assert!(policy.backoff(attempt) <= ceiling);
        }
        assert_eq!(MongoRetryPolicy::default().max_attempts(0).max_attempts, 1);
    }
}
