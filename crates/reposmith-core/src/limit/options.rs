//! [`LimiterOptions`]: what a limiter does when its store fails, and its
//! bounds.

use std::time::Duration;

use crate::{Error, Result};

/// What a limiter answers while its store (Redis) is down, slow, or its
/// circuit breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFailure {
    /// Deny every call, with [`Denial::Unavailable`](super::Denial::Unavailable).
    /// For limits that protect money (a provider's token bill, a paid quota).
    Closed,
    /// Admit within an in-process limiter holding this process to each
    /// limit divided by `processes` (the number of processes expected to
    /// share the limits). For limits that protect availability.
    Open {
        /// Processes sharing the limits (at least 1).
        processes: u32,
    },
}

/// A limiter's options. The defaults fail closed, wait at most 50 ms for the
/// store, open the breaker after 3 failures for 1 s, give leases 60 s and
/// keep a deny cache of up to 10,000 subjects for at most 2 s each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterOptions {
    /// Behaviour while the store cannot answer.
    pub on_failure: OnFailure,
    /// Key prefix in the store (letters, digits, `.`, `_`, `-`).
    pub prefix: String,
    /// The longest wait for the store's answer; past it the failure policy
    /// decides.
    pub response_timeout: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one call probes the store.
    pub breaker_cooldown: Duration,
    /// How long a permit or reservation lasts unless renewed.
    pub lease_ttl: Duration,
    /// Subjects the local deny cache remembers (0 turns it off).
    pub deny_cache_capacity: usize,
    /// The longest a denial is answered from the deny cache (at most its
    /// retry-after). Short, because the cache is per process: a reset or a
    /// refund made by another process does not reach it.
    pub deny_cache_max_age: Duration,
    /// Subjects the fail-open fallback tracks.
    pub local_capacity: usize,
}

impl Default for LimiterOptions {
    fn default() -> Self {
        LimiterOptions {
            on_failure: OnFailure::Closed,
            prefix: "reposmith".to_owned(),
            response_timeout: Duration::from_millis(50),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(60),
            deny_cache_capacity: 10_000,
            deny_cache_max_age: Duration::from_secs(2),
            local_capacity: 100_000,
        }
    }
}

impl LimiterOptions {
    /// Defaults, failing closed.
    pub fn fail_closed() -> LimiterOptions {
        LimiterOptions::default()
    }

    /// Defaults, failing open with each of `processes` holding its share.
    pub fn fail_open(processes: u32) -> LimiterOptions {
        LimiterOptions {
            on_failure: OnFailure::Open { processes },
            ..LimiterOptions::default()
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the response timeout.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the lease TTL.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets the breaker's threshold and cooldown.
    #[must_use]
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker_failures = failures;
        self.breaker_cooldown = cooldown;
        self
    }

    /// Sets the deny cache's capacity (0 turns it off).
    #[must_use]
    pub fn deny_cache(mut self, capacity: usize) -> Self {
        self.deny_cache_capacity = capacity;
        self
    }

    /// Rejects values outside their bounds, naming the option.
    pub fn validate(&self) -> Result<()> {
        super::spec::check_name(&self.prefix, "limiter prefix")?;
        let bad = |option: &str, reason: &str| {
            Err(Error::config(format!("limiter option {option}"), reason))
        };
        let within = |d: Duration, low: Duration, high: Duration| d >= low && d <= high;
        if !within(
            self.response_timeout,
            Duration::from_millis(1),
            Duration::from_secs(60),
        ) {
            return bad("response_timeout", "must be 1 ms ..= 60 s");
        }
        if self.breaker_failures == 0 {
            return bad("breaker_failures", "must be at least 1");
        }
        if !within(
            self.breaker_cooldown,
            Duration::from_millis(1),
            Duration::from_secs(600),
        ) {
            return bad("breaker_cooldown", "must be 1 ms ..= 10 min");
        }
        if !within(
            self.lease_ttl,
            Duration::from_millis(100),
            Duration::from_secs(86_400),
        ) {
            return bad("lease_ttl", "must be 100 ms ..= 24 h");
        }
        if matches!(self.on_failure, OnFailure::Open { processes: 0 }) {
            return bad("on_failure", "fail-open needs at least 1 expected process");
        }
        if self.deny_cache_max_age > Duration::from_secs(3600) {
            return bad("deny_cache_max_age", "must be at most an hour");
        }
        if self.local_capacity == 0 {
            return bad("local_capacity", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_by_name() {
        LimiterOptions::default().validate().unwrap();
        let cases = [
            (
                LimiterOptions::default().response_timeout(Duration::ZERO),
                "response_timeout",
            ),
            (LimiterOptions::fail_open(0), "on_failure"),
            (
                LimiterOptions::default().lease_ttl(Duration::from_millis(5)),
                "lease_ttl",
            ),
            (LimiterOptions::default().prefix("a b"), "limiter prefix"),
            (
                LimiterOptions::default().breaker(0, Duration::from_secs(1)),
                "breaker_failures",
            ),
        ];
        for (options, needle) in cases {
            let err = options.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }
}
