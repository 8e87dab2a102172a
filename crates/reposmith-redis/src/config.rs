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
//! # Redis Cluster
//!
//! [`RedisConfig::cluster`] names the seed nodes of a Redis Cluster instead
//! of one server: the backend discovers the others (`CLUSTER SLOTS`),
//! routes each command to the master of its key's slot, follows `MOVED`
//! and `ASK`, and refreshes the slot map after a failover. The timeouts
//! mean the same: `response_timeout` bounds each command *including* its
//! redirects and retries inside the driver, so a command that lands on a
//! dead master fails within it and the caller's own retry finds the
//! promoted replica.
//!
//! # Environment
//!
//! `REDIS_URL` names a standalone server; when it is unset,
//! `REDIS_CLUSTER_URLS` (comma-separated node URLs) names a cluster. Optionally
//! `REPOSMITH_REDIS_CONNECT_TIMEOUT`, `REPOSMITH_REDIS_RESPONSE_TIMEOUT`,
//! `REPOSMITH_REDIS_LAZY`, `REPOSMITH_REDIS_TLS_CA_FILE` (see
//! [`RedisConfig::tls_ca_file`]), `REPOSMITH_ALLOW_PLAINTEXT` (see
//! [`RedisConfig::allow_plaintext`]).
//!
//! # TLS
//!
//! `rediss://` URLs connect with TLS (reposmith's `tls` feature), checking
//! the server's certificate and host name against the Mozilla roots, or
//! against the CA in [`RedisConfig::tls_ca_file`] alone when set.
//! [`RedisConfig::validate`] refuses a `redis://` URL (or cluster node)
//! naming a host other than this machine (`localhost`, `127.0.0.0/8`,
//! `::1`, a Unix socket) with an [`Error::Config`] naming the URL (password
//! masked), unless [`RedisConfig::allow_plaintext`] or
//! `REPOSMITH_ALLOW_PLAINTEXT=1`; see [`reposmith_core::tls`].

use std::path::PathBuf;
use std::time::Duration;

use reposmith_core::config::Env;
use reposmith_core::{ConnectionUrl, Error, Result};

/// How to reach Redis and how hard to try.
///
/// `Debug` prints the URL with its password masked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` or `rediss://` for TLS; for a
    /// cluster, its first node.
    pub url: ConnectionUrl,
    /// The seed nodes of a Redis Cluster ([`RedisConfig::cluster`]); empty
    /// for a standalone server at `url`. They share one password.
    pub cluster_nodes: Vec<ConnectionUrl>,
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
    /// A PEM file of the CA(s) that signed the server's certificate, for
    /// `rediss://` to a server with a private CA; `None`: the Mozilla roots.
    /// Read from `REPOSMITH_REDIS_TLS_CA_FILE`.
    pub tls_ca_file: Option<PathBuf>,
    /// Connect without TLS to a host other than this machine (`false` by
    /// default: such a URL is refused, see the module docs).
    /// `REPOSMITH_ALLOW_PLAINTEXT=1` in the process environment allows it
    /// for every config, however built.
    pub allow_plaintext: bool,
}

impl RedisConfig {
    /// Settings for `url` with the documented defaults.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: ConnectionUrl::new(url),
            cluster_nodes: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
            reconnect_retries: 3,
            reconnect_max_delay: Duration::from_secs(1),
            lazy: false,
            tls_ca_file: None,
            allow_plaintext: false,
        }
    }

    /// Settings for the Redis Cluster whose seed nodes are `urls` (one is
    /// enough; more let the first connection survive a dead node), with the
    /// documented defaults.
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<ConnectionUrl> = urls.into_iter().map(ConnectionUrl::new).collect();
        let first = nodes.first().map_or("", |u| u.expose()).to_owned();
        RedisConfig {
            cluster_nodes: nodes,
            ..RedisConfig::new(first)
        }
    }

    /// True for a cluster configuration.
    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes.is_empty()
    }

    /// Settings from `REDIS_URL` (or, when it is unset, `REDIS_CLUSTER_URLS`)
    /// and the `REPOSMITH_REDIS_*` variables; `None` when neither is set.
    pub fn from_env(env: &Env<'_>) -> Result<Option<Self>> {
        let mut config = match (env.get("REDIS_URL"), env.get("REDIS_CLUSTER_URLS")) {
            (Some(url), _) => RedisConfig::new(url),
            (None, Some(urls)) => RedisConfig::cluster(
                urls.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
            ),
            (None, None) => return Ok(None),
        };
        let connect = env.duration("REPOSMITH_REDIS_CONNECT_TIMEOUT")?;
        config.connect_timeout = connect.unwrap_or(config.connect_timeout);
        let response = env.duration("REPOSMITH_REDIS_RESPONSE_TIMEOUT")?;
        config.response_timeout = response.unwrap_or(config.response_timeout);
        config.lazy = env.flag("REPOSMITH_REDIS_LAZY")?.unwrap_or(config.lazy);
        if let Some(path) = env.get("REPOSMITH_REDIS_TLS_CA_FILE") {
            config.tls_ca_file = Some(PathBuf::from(path));
        }
        let plaintext = env.flag(reposmith_core::tls::ALLOW_PLAINTEXT_ENV)?;
        config.allow_plaintext = plaintext.unwrap_or(config.allow_plaintext);
        config.validate()?;
        Ok(Some(config))
    }

    /// Rejects settings that would leave a wait unbounded, and URLs that
    /// would go unencrypted to another machine unless
    /// [`RedisConfig::allow_plaintext`] (see the module docs, "TLS").
    pub fn validate(&self) -> Result<()> {
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(Error::config(
                "redis",
                "connect_timeout and response_timeout must be greater than zero",
            ));
        }
        if self.url.expose().is_empty() {
            return Err(Error::config(
                "redis",
                "no server URL (an empty cluster node list?)",
            ));
        }
        crate::tls::check_config(self)
    }

    /// Trusts only the CA(s) in this PEM file for `rediss://` (see
    /// [`RedisConfig::tls_ca_file`](field@RedisConfig::tls_ca_file)).
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Allows (or, `false`, refuses again) URLs that would go unencrypted
    /// to a host other than this machine. Loopback and Unix sockets never
    /// need it.
    pub fn allow_plaintext(mut self, allow: bool) -> Self {
        self.allow_plaintext = allow;
        self
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
            "REDIS_URL" => Some("redis://:pw@127.0.0.1:6379/2".into()),
            "REPOSMITH_REDIS_RESPONSE_TIMEOUT" => Some("150ms".into()),
            _ => None,
        });
        let config = RedisConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(config.response_timeout, Duration::from_millis(150));
        assert!(!format!("{config:?}").contains("pw"));
    }

    #[test]
    fn env_names_a_cluster_when_redis_url_is_unset() {
        let env = Env::from_fn(|k| match k {
            "REDIS_CLUSTER_URLS" => Some("redis://h:7001, redis://h:7002,".into()),
            "REPOSMITH_ALLOW_PLAINTEXT" => Some("1".into()),
            _ => None,
        });
        let config = RedisConfig::from_env(&env).unwrap().unwrap();
        assert!(config.is_cluster());
        assert_eq!(config.cluster_nodes.len(), 2);
        assert_eq!(config.url.target(), "h:7001");
        let both = Env::from_fn(|k| match k {
            "REDIS_URL" => Some("redis://127.0.0.1:6379".into()),
            "REDIS_CLUSTER_URLS" => Some("redis://127.0.0.1:7001".into()),
            _ => None,
        });
        assert!(!RedisConfig::from_env(&both).unwrap().unwrap().is_cluster());
        let empty = Env::from_fn(|k| (k == "REDIS_CLUSTER_URLS").then(|| ",".to_owned()));
        assert!(RedisConfig::from_env(&empty).is_err());
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let config = RedisConfig::new("redis://h").response_timeout(Duration::ZERO);
        assert!(config.validate().is_err());
    }
}
