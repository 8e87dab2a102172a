//! Running a whole unit of work again when the server aborted it to keep it
//! serializable or to break a deadlock (SQLSTATE 40001, 40P01).
//!
//! Only those aborts are retried: the transaction is known to have rolled
//! back, so running the unit again cannot apply anything twice. A lost
//! connection after COMMIT ([`Error::CommitOutcomeUnknown`](reposmith_core::Error::CommitOutcomeUnknown)) is never retried.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reposmith_core::Result;

use crate::{IsolationLevel, PgBackend, PgUnitOfWork};

/// A future borrowing the unit of work it runs on.
pub type UnitFuture<'u, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'u>>;

/// How a retried unit of work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Isolation level of every attempt.
    pub isolation: IsolationLevel,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles for each later one.
    pub base_delay: Duration,
    /// Cap on the backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// SERIALIZABLE, 5 attempts, 10 ms doubling up to 500 ms, with full jitter.
    fn default() -> Self {
        RetryPolicy {
            isolation: IsolationLevel::Serializable,
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// Sets the isolation level.
    pub fn isolation(mut self, isolation: IsolationLevel) -> Self {
        self.isolation = isolation;
        self
    }

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

impl PgBackend {
    /// Runs `work` in a unit of work and commits it; if the server aborts
    /// the unit as a serialization failure or deadlock — in a statement or
    /// at COMMIT — rolls back, waits a jittered backoff and runs `work`
    /// again, up to `policy.max_attempts` times. Any other error ends it.
    ///
    /// `work` may run several times, so it must not have effects outside the
    /// transaction it is given.
    ///
    /// ```no_run
    /// # use reposmith_postgres::{PgBackend, RetryPolicy};
    /// # async fn run(pg: PgBackend) -> reposmith_core::Result<()> {
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
    pub async fn transaction<T, F>(&self, policy: RetryPolicy, mut work: F) -> Result<T>
    where
        F: for<'u> FnMut(&'u PgUnitOfWork) -> UnitFuture<'u, T>,
    {
        let mut attempt = 1;
        loop {
            let outcome = self.attempt(policy.isolation, &mut work).await;
            match outcome {
                Err(error) if error.is_retryable() && attempt < policy.max_attempts => {
                    tracing::debug!(%error, attempt, "unit of work aborted by the server, retrying");
                    tokio::time::sleep(policy.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt<T, F>(&self, isolation: IsolationLevel, work: &mut F) -> Result<T>
    where
        F: for<'u> FnMut(&'u PgUnitOfWork) -> UnitFuture<'u, T>,
    {
        let unit = self.begin_with(isolation).await?;
        let value = match work(&unit).await {
            Ok(value) => value,
            Err(error) => {
                // An explicit rollback keeps the connection; if it fails the
                // unit discards the connection, and the work's error is what matters.
                let _ = unit.rollback().await;
                return Err(error);
            }
        };
        unit.commit().await.map(|()| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let ceiling = (policy.base_delay * (1 << (attempt - 1))).min(policy.max_delay);
            assert!(policy.backoff(attempt) <= ceiling);
        }
        assert_eq!(RetryPolicy::default().max_attempts(0).max_attempts, 1);
    }
}
