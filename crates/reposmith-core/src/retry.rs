//! [`RetryPolicy`] and the loop that runs a whole unit of work again when
//! the server aborted it as safe to retry.
//!
//! Only [`Error::Retryable`] is retried: a
//! serialization failure or deadlock on PostgreSQL (SQLSTATE 40001, 40P01),
//! a `TransientTransactionError` on MongoDB. The transaction is then known
//! not to have committed, so running the unit again cannot apply anything
//! twice. A lost reply to a commit
//! ([`Error::CommitOutcomeUnknown`]) is
//! never retried. What differs per backend (the isolation level of a
//! Postgres unit, the read concern of a MongoDB one) is set on the backend,
//! not here.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::repository::BoxFuture;
use crate::unit::UnitOfWork;
use crate::{Error, Result};

/// How a retried unit of work runs: how many attempts and how long to wait
/// between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles for each later one.
    pub base_delay: Duration,
    /// Cap on the backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 10 ms doubling up to 500 ms, with full jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts (at least 1), waiting up to `base_delay`
    /// doubling to `max_delay` between them; usable in a `const`.
    pub const fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        let max_delay = if max_delay.as_nanos() < base_delay.as_nanos() {
            base_delay
        } else {
            max_delay
        };
        RetryPolicy {
            max_attempts: if max_attempts == 0 { 1 } else { max_attempts },
            base_delay,
            max_delay,
        }
    }

    /// Runs the unit once: no retry.
    pub fn once() -> Self {
        RetryPolicy::default().max_attempts(1)
    }

    /// Sets the number of attempts (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first backoff and its cap.
    pub fn backoff_between(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max.max(base);
        self
    }

    /// A random wait in `[0, min(max_delay, base_delay * 2^(attempt-1))]`:
    /// "full jitter", so units that collided do not collide again in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        ceiling.mul_f64(jitter_fraction())
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not
    /// [`Error::is_retryable`], or has run `max_attempts` times, sleeping
    /// [`backoff`](Self::backoff) between runs.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut number = 1;
        loop {
            match attempt().await {
                Err(error) => match self.wait_after(&error, number) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err(error),
                },
                done => return done,
            }
            number += 1;
        }
    }

    /// The wait before running again after attempt `number` failed with
    /// `error`; `None` when it must not run again.
    fn wait_after(&self, error: &Error, number: u32) -> Option<Duration> {
        if !error.is_retryable() || number >= self.max_attempts {
            return None;
        }
        tracing::debug!(%error, attempt = number, "unit of work aborted as retryable, running it again");
        Some(self.backoff(number))
    }
}

/// A number in `[0, 1)` that differs from call to call: the clock's low
/// bits mixed with a counter, noise enough to spread retries apart (not for
/// anything that must be unpredictable).
pub fn jitter_fraction() -> f64 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = nanos
        .wrapping_add(CALLS.fetch_add(0x9E37_79B9, Ordering::Relaxed))
        .wrapping_mul(2_654_435_761);
    f64::from(mixed % 1_000_000) / 1_000_000.0
}

/// Runs `work` in units from `begin` as `policy` allows: each attempt
/// begins a fresh unit, commits it when `work` succeeds and rolls it back
/// when it fails. What [`DataStore::transaction`](crate::DataStore::transaction)
/// does on every backend.
pub async fn retry_units<U, T, B, BeginFut, F>(
    policy: &RetryPolicy,
    mut begin: B,
    mut work: F,
) -> Result<T>
where
    U: UnitOfWork,
    B: FnMut() -> BeginFut,
    BeginFut: Future<Output = Result<U>>,
    F: for<'u> FnMut(&'u U) -> BoxFuture<'u, Result<T>>,
{
    let mut number = 1;
    loop {
        let outcome = match begin().await {
            Ok(unit) => run_in_unit(unit, &mut work).await,
            Err(error) => Err(error),
        };
        match outcome {
            Err(error) => match policy.wait_after(&error, number) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(error),
            },
            done => return done,
        }
        number += 1;
    }
}

/// One attempt of a retried unit: runs `work` on `unit`, commits when it
/// succeeds and rolls back when it fails (the work's error is what is
/// returned; a failed rollback only ends the unit sooner).
async fn run_in_unit<U, T, F>(unit: U, work: &mut F) -> Result<T>
where
    U: UnitOfWork,
    F: for<'u> FnMut(&'u U) -> BoxFuture<'u, Result<T>>,
{
    match work(&unit).await {
        Ok(value) => unit.commit().await.map(|()| value),
        Err(error) => {
            let _ = unit.rollback().await;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::Backend;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let ceiling = (policy.base_delay * (1 << (attempt - 1))).min(policy.max_delay);
            assert!(policy.backoff(attempt) <= ceiling);
        }
        assert_eq!(RetryPolicy::default().max_attempts(0).max_attempts, 1);
    }

    fn retryable() -> Error {
        Error::Retryable {
            backend: Backend::Postgres,
            code: "40001".to_owned(),
            reason: "could not serialize access".to_owned(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_retryable_errors_and_stops_at_the_limit() {
        let policy = RetryPolicy::default().max_attempts(3);
        let runs = Cell::new(0);
        let outcome: Result<()> = policy
            .run(|| {
                runs.set(runs.get() + 1);
                async { Err(retryable()) }
            })
            .await;
        assert!(outcome.unwrap_err().is_retryable());
        assert_eq!(runs.get(), 3);

        runs.set(0);
        let outcome: Result<()> = policy
            .run(|| {
                runs.set(runs.get() + 1);
                async { Err(Error::config("x", "not retryable")) }
            })
            .await;
        assert!(outcome.is_err());
        assert_eq!(runs.get(), 1);

        runs.set(0);
        let outcome = policy
            .run(|| {
                runs.set(runs.get() + 1);
                let n = runs.get();
                async move { if n < 2 { Err(retryable()) } else { Ok(n) } }
            })
            .await;
        assert_eq!(outcome.unwrap(), 2);
    }
}
