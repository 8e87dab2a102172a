//! [`RelayOptions`]: how a relay paces itself and when it gives up on a row.

use std::time::Duration;

use reposmith_core::RetryPolicy;

/// How a relay paces itself and when it gives up on a row.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Rows per pass (default 256).
    pub batch_size: u32,
    /// Longest wait for one destination to take its share of a pass (default
    /// 10 s); past it the share is offered again later, without spending an
    /// attempt (a timeout is an unreachable destination).
    pub publish_timeout: Duration,
    /// Longest wait between passes when no notification arrives (default
    /// 1 s); also how long rows of an unreachable destination wait.
    pub poll_interval: Duration,
    /// Deliveries a row gets before it turns dead (default 10).
    pub max_attempts: u32,
    /// Backoff between failed deliveries of a row (default 1 s doubling to
    /// 5 min, full jitter; waits are capped at one day).
    pub retry: RetryPolicy,
    /// How long done rows and job receipts are kept before [`Relay::run`](super::Relay::run)
    /// purges them (default 7 days; keep receipts longer than any job can
    /// be redelivered).
    pub retention: Duration,
    /// How often [`Relay::run`](super::Relay::run) purges (default 10 min).
    pub purge_interval: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            batch_size: 256,
            publish_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            max_attempts: 10,
            retry: RetryPolicy::new(10, Duration::from_secs(1), Duration::from_secs(300)),
            retention: Duration::from_secs(7 * 24 * 3600),
            purge_interval: Duration::from_secs(600),
        }
    }
}

impl RelayOptions {
    /// Sets [`batch_size`](Self::batch_size) (at least 1).
    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Sets [`publish_timeout`](Self::publish_timeout) (at least 1 ms).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets [`poll_interval`](Self::poll_interval) (at least 1 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts) (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self.retry = RetryPolicy::new(
            self.max_attempts,
            self.retry.base_delay,
            self.retry.max_delay,
        );
        self
    }

    /// Sets the backoff between failed deliveries of a row.
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.retry = RetryPolicy::new(self.max_attempts, base, max);
        self
    }

    /// Sets [`retention`](Self::retention).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets [`purge_interval`](Self::purge_interval).
    pub fn purge_interval(mut self, interval: Duration) -> Self {
        self.purge_interval = interval.max(Duration::from_secs(1));
        self
    }
}
