//! Connection settings for Redis, from code or from the environment.
//!
//! # Defaults and why
//!
//! | setting | default | why |
//! |---|---|---|
//! | `connect_timeout` | 2 s | each connection attempt; a cache must not stall startup or a request |
//! | `response_timeout` | 1 s | a slow Redis (a long `DEBUG SLEEP`, a blocked server) is treated as down, so reads fall back to the database |
//! | `reconnect_retries` | 3 | attempts per reconnect, with exponential backoff capped at `reconnect_max_delay` |
//! | `reconnect_max_delay` | 1 s | bounds the backoff between attempts |
//! | `lazy` | false | connect at startup so a wrong URL or password fails loudly; set it when the service must start while Redis is down |
//!
//! # Environment
//!
//! `REDIS_URL` (required), and optionally `REPOSMITH_REDIS_CONNECT_TIMEOUT`,
//! `REPOSMITH_REDIS_RESPONSE_TIMEOUT`, `REPOSMITH_REDIS_LAZY`.

use std::time::Duration;

use reposmith_core::config::Env;
use reposmith_core::{ConnectionUrl, Error, Result};

/// How to reach Redis and how hard to try.
///
/// `Debug` prints the URL with its password masked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` or `rediss://` for TLS.
    pub url: ConnectionUrl,
    /// Longest wait for one connection attempt.
    pub connect_timeout: Duration,
    /// Longest wait for a reply to any command.
    pub response_timeout: Duration,
    /// Connection attempts per reconnect.
    pub reconnect_retries: usize,
    /// Cap on the backoff between reconnect attempts.
    pub reconnect_max_delay: Duration,
    /// Do not connect until the first command.
    pub lazy: bool,
}

impl RedisConfig {
    /// Settings for `url` with the documented defaults.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: ConnectionUrl::new(url),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
            reconnect_retries: 3,
            reconnect_max_delay: Duration::from_secs(1),
            lazy: false,
        }
    }

    /// Settings from `REDIS_URL` and the `REPOSMITH_REDIS_*` variables; `None`
    /// when `REDIS_URL` is unset.
    pub fn from_env(env: &Env<'_>) -> Result<Option<Self>> {
        let Some(url) = env.get("REDIS_URL") else {
            return Ok(None);
        };
        let mut config = RedisConfig::new(url);
        let connect = env.duration("REPOSMITH_REDIS_CONNECT_TIMEOUT")?;
        config.connect_timeout = connect.unwrap_or(config.connect_timeout);
        let response = env.duration("REPOSMITH_REDIS_RESPONSE_TIMEOUT")?;
        config.response_timeout = response.unwrap_or(config.response_timeout);
        config.lazy = env.flag("REPOSMITH_REDIS_LAZY")?.unwrap_or(config.lazy);
        config.validate()?;
        Ok(Some(config))
    }

    /// Rejects settings that would leave a wait unbounded.
    pub fn validate(&self) -> Result<()> {
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(Error::config(
                "redis",
                "connect_timeout and response_timeout must be greater than zero",
            ));
        }
        Ok(())
    }

    /// Sets `response_timeout`.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets `connect_timeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets `lazy`.
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_reads_timeouts() {
        let env = Env::from_fn(|k| match k {
            "REDIS_URL" => Some("redis://:pw@h:6379/2".into()),
            "REPOSMITH_REDIS_RESPONSE_TIMEOUT" => Some("150ms".into()),
            _ => None,
        });
        let config = RedisConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(config.response_timeout, Duration::from_millis(150));
        assert!(!format!("{config:?}").contains("pw"));
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let config = RedisConfig::new("redis://h").response_timeout(Duration::ZERO);
        assert!(config.validate().is_err());
    }
}
