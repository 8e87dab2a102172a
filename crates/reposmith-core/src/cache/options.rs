//! [`CacheOptions`]: the cache's knobs, with defaults that suit a Redis on
//! the same network.

use std::time::Duration;

use super::key::check_prefix;
use crate::Result;

/// The largest `max_entry_bytes` accepted (Redis itself takes up to 512 MB
/// per value; an entry this big already costs more to move than to query).
pub const MAX_ENTRY_BYTES: usize = 64 << 20;

/// How the repository cache behaves. `CacheOptions::default()` is what a
/// `Store` with Redis configured uses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheOptions {
    /// The first part of every key (`reposmith`): applications sharing a
    /// Redis use different prefixes.
    pub prefix: String,
    /// Longest wait for a lookup or a fill. A read whose lookup takes
    /// longer reads the database instead (50 ms).
    pub response_timeout: Duration,
    /// Longest wait for each chunk of an invalidation after a commit
    /// (250 ms); one that takes longer is retried by this process before
    /// its next cache read and replayed from the outbox for the others.
    pub invalidation_timeout: Duration,
    /// Consecutive failures (errors or timeouts) that open the circuit
    /// breaker (1): while it is open reads go to the database without
    /// asking the cache. Invalidations are always attempted.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one call probes the cache
    /// again (1 s).
    pub breaker_cooldown: Duration,
    /// How long a fill lease lives (5 s): a reader that crashes or is
    /// cancelled between its lookup and its fill blocks other fills of
    /// that entry at most this long.
    pub lease_ttl: Duration,
    /// Longest time a reader waits for another reader's fill of the same
    /// entry, in this process or another (500 ms); then it reads the
    /// database itself without filling.
    pub max_wait: Duration,
    /// Fraction by which TTLs are shortened at random (0.1: a TTL of 5 min
    /// becomes 4.5 to 5 min), so entries filled together do not expire
    /// together.
    pub ttl_jitter: f64,
    /// XFetch's beta (1.0): higher refreshes hot entries earlier; 0 turns
    /// early refresh off.
    pub xfetch_beta: f64,
    /// Largest encoded entry cached (1 MiB); larger results are served
    /// from the database and not cached.
    pub max_entry_bytes: usize,
    /// Whether a PostgreSQL unit of work also records its invalidations in
    /// the transactional outbox (on), so the outbox relay replays any the
    /// cache missed. Needs the outbox tables; off, a missed invalidation
    /// lasts until the entry's TTL.
    pub durable_invalidation: bool,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            prefix: "reposmith".to_owned(),
            response_timeout: Duration::from_millis(50),
            invalidation_timeout: Duration::from_millis(250),
            breaker_failures: 1,
            breaker_cooldown: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(5),
            max_wait: Duration::from_millis(500),
            ttl_jitter: 0.1,
            xfetch_beta: 1.0,
            max_entry_bytes: 1 << 20,
            durable_invalidation: true,
        }
    }
}

impl CacheOptions {
    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`response_timeout`](Self::response_timeout).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`durable_invalidation`](Self::durable_invalidation).
    pub fn durable_invalidation(mut self, on: bool) -> Self {
        self.durable_invalidation = on;
        self
    }

    /// Sets [`max_wait`](Self::max_wait).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Sets [`lease_ttl`](Self::lease_ttl).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets [`breaker_cooldown`](Self::breaker_cooldown).
    pub fn breaker_cooldown(mut self, cooldown: Duration) -> Self {
        self.breaker_cooldown = cooldown;
        self
    }

    /// Sets [`xfetch_beta`](Self::xfetch_beta).
    pub fn xfetch_beta(mut self, beta: f64) -> Self {
        self.xfetch_beta = beta;
        self
    }

    /// Checks every knob, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        check_prefix(&self.prefix)?;
        let bad = |what: &str| Err(crate::Error::config("cache", what.to_owned()));
        let minute = Duration::from_secs(60);
        let timeouts = [
            self.response_timeout,
            self.invalidation_timeout,
            self.breaker_cooldown,
        ];
        if timeouts.iter().any(|t| t.is_zero() || *t > minute) {
            return bad(
                "response_timeout, invalidation_timeout and breaker_cooldown must be above \
                 zero and at most 60 s",
            );
        }
        if self.lease_ttl < Duration::from_millis(10) || self.lease_ttl > minute {
            return bad("lease_ttl must be 10 ms to 60 s");
        }
        if self.max_wait > minute {
            return bad("max_wait must be at most 60 s");
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > MAX_ENTRY_BYTES {
            return bad("max_entry_bytes must be 1 byte to 64 MiB");
        }
        if self.breaker_failures == 0 {
            return bad("breaker_failures must be at least 1");
        }
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return bad("ttl_jitter must be in [0, 1)");
        }
        if !self.xfetch_beta.is_finite() || self.xfetch_beta < 0.0 {
            return bad("xfetch_beta must be a finite number >= 0");
        }
        Ok(())
    }
}
