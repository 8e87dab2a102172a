//! Client settings for MongoDB, from code or from the environment.
//!
//! # Defaults and why
//!
//! | setting | default | why |
//! |---|---|---|
//! | `max_pool_size` | 10 | the driver's default, per server |
//! | `min_pool_size` | 0 | nothing held open for an idle service |
//! | `connect_timeout` | 5 s | the driver waits 10 s; a dead host should fail startup sooner |
//! | `server_selection_timeout` | 5 s | the driver waits 30 s before admitting no server is reachable |
//! | `max_idle_time` | 10 min | closes pooled connections nobody used |
//! | `operation_timeout` | 30 s | a deadline reposmith puts around each operation it sends |
//! | write concern | `w: majority`, `wtimeout` 10 s | acknowledged writes survive a failover; the wait is bounded |
//! | read concern | server default | transactions choose their own |
//! | `clock` | the system clock | the time repositories stamp documents with; [`Clock::fixed`] in tests |
//! | `app_name` | `reposmith` | shows in the server's logs and `currentOp` |
//!
//! A setting written in the URL (`?maxPoolSize=50&w=1`) wins over the value
//! here, so operators can tune a deployment without a rebuild.
//!
//! # Environment
//!
//! `MONGODB_URL` (required), and optionally `MONGODB_DATABASE` (else the URL's
//! path, else `reposmith`), `REPOSMITH_MONGO_MAX_POOL_SIZE`,
//! `REPOSMITH_MONGO_MIN_POOL_SIZE`, `REPOSMITH_MONGO_CONNECT_TIMEOUT`,
//! `REPOSMITH_MONGO_SERVER_SELECTION_TIMEOUT`, `REPOSMITH_MONGO_OPERATION_TIMEOUT`,
//! `REPOSMITH_ALLOW_PLAINTEXT` (see [`MongoConfig::allow_plaintext`]).
//!
//! # TLS
//!
//! [`MongoConfig::validate`] refuses a `mongodb://` URL without `tls=true`
//! that names a host other than this machine (`localhost`, `127.0.0.0/8`,
//! `::1`, a Unix socket), with an [`Error::Config`] naming the URL
//! (password masked); `mongodb+srv://` implies TLS. With `tls=true` the
//! driver checks the certificate and the host name (`tlsCAFile=<CA file>`
//! for a private CA; `tlsInsecure=true` turns both checks off). Allow
//! plaintext on purpose with [`MongoConfig::allow_plaintext`] or
//! `REPOSMITH_ALLOW_PLAINTEXT=1`; see [`reposmith_core::tls`].

use std::time::Duration;

use mongodb::options::{ReadConcern, WriteConcern};
use reposmith_core::config::Env;
use reposmith_core::{Clock, ConnectionUrl, Error, Result};

/// The database used when neither the config nor the URL names one.
pub const DEFAULT_DATABASE: &str = "reposmith";

/// How to reach MongoDB and how to pool connections to it.
///
/// `Debug` prints the URL with its password masked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MongoConfig {
    /// `mongodb://user:password@host:port/database?options`
    pub url: ConnectionUrl,
    /// Database for repositories; `None`: the URL's path, else [`DEFAULT_DATABASE`].
    pub database: Option<String>,
    /// Name reported to the server.
    pub app_name: String,
    /// Most connections per server; `None` keeps the URL's or the driver's value.
    pub max_pool_size: Option<u32>,
    /// Connections kept open per server.
    pub min_pool_size: Option<u32>,
    /// Longest wait for a TCP and TLS connection.
    pub connect_timeout: Duration,
    /// Longest wait for a suitable server before failing an operation.
    pub server_selection_timeout: Duration,
    /// Pooled connections idle this long are closed.
    pub max_idle_time: Option<Duration>,
    /// Deadline reposmith puts around each operation.
    pub operation_timeout: Duration,
    /// Read concern for operations outside transactions; `None`: the URL's or the server's.
    pub read_concern: Option<ReadConcern>,
    /// Write concern for writes outside transactions; `None`: the URL's or the server's.
    pub write_concern: Option<WriteConcern>,
    /// Connect without TLS to a host other than this machine (`false` by
    /// default: such a URL is refused, see the module docs).
    /// `REPOSMITH_ALLOW_PLAINTEXT=1` in the process environment allows it
    /// for every config, however built.
    pub allow_plaintext: bool,
    /// Where repositories take the time they stamp `created_at`,
    /// `updated_at` and soft deletes with, and the cutoff of
    /// `purge_deleted` (the system clock by default; [`Clock::fixed`] in
    /// tests makes those stamps exact, at BSON's millisecond precision).
    /// Never read from the environment. See [`reposmith_core::clock`].
    pub clock: Clock,
}

impl MongoConfig {
    /// Settings for `url` with the documented defaults.
    pub fn new(url: impl Into<String>) -> Self {
        MongoConfig {
            url: ConnectionUrl::new(url),
            database: None,
            app_name: "reposmith".to_owned(),
            max_pool_size: Some(10),
            min_pool_size: None,
            connect_timeout: Duration::from_secs(5),
            server_selection_timeout: Duration::from_secs(5),
            max_idle_time: Some(Duration::from_secs(600)),
            operation_timeout: Duration::from_secs(30),
            read_concern: None,
            write_concern: Some(majority_write_concern()),
            allow_plaintext: false,
            clock: Clock::system(),
        }
    }

    /// Settings from `MONGODB_URL` and the `REPOSMITH_MONGO_*` variables; `None`
    /// when `MONGODB_URL` is unset.
    pub fn from_env(env: &Env<'_>) -> Result<Option<Self>> {
        let Some(url) = env.get("MONGODB_URL") else {
            return Ok(None);
        };
        let mut config = MongoConfig::new(url);
        config.database = env.get("MONGODB_DATABASE");
        let max = env.number("REPOSMITH_MONGO_MAX_POOL_SIZE")?;
        config.max_pool_size = max.or(config.max_pool_size);
        config.min_pool_size = env.number("REPOSMITH_MONGO_MIN_POOL_SIZE")?;
        let connect = env.duration("REPOSMITH_MONGO_CONNECT_TIMEOUT")?;
        config.connect_timeout = connect.unwrap_or(config.connect_timeout);
        let selection = env.duration("REPOSMITH_MONGO_SERVER_SELECTION_TIMEOUT")?;
        config.server_selection_timeout = selection.unwrap_or(config.server_selection_timeout);
        let operation = env.duration("REPOSMITH_MONGO_OPERATION_TIMEOUT")?;
        config.operation_timeout = operation.unwrap_or(config.operation_timeout);
        let plaintext = env.flag(reposmith_core::tls::ALLOW_PLAINTEXT_ENV)?;
        config.allow_plaintext = plaintext.unwrap_or(config.allow_plaintext);
        config.validate()?;
        Ok(Some(config))
    }

    /// Rejects settings the client cannot honour, naming the setting, and
    /// a URL that would go unencrypted to another machine unless
    /// [`MongoConfig::allow_plaintext`] (see the module docs, "TLS").
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: &str| Err(Error::config("mongodb", reason));
        if self.max_pool_size == Some(0) {
            return fail("max_pool_size must be at least 1 (0 would mean unbounded)");
        }
        if let (Some(min), Some(max)) = (self.min_pool_size, self.max_pool_size)
            && min > max
        {
            return fail("min_pool_size exceeds max_pool_size");
        }
        if self.operation_timeout.is_zero() || self.server_selection_timeout.is_zero() {
            return fail(
                "operation_timeout and server_selection_timeout must be greater than zero",
            );
        }
        crate::tls::check(&self.url, self.allow_plaintext)
    }

    /// Allows (or, `false`, refuses again) a URL that would go unencrypted
    /// to a host other than this machine. Loopback and Unix sockets never
    /// need it.
    pub fn allow_plaintext(mut self, allow: bool) -> Self {
        self.allow_plaintext = allow;
        self
    }

    /// Sets the clock repositories stamp documents with (see
    /// [`MongoConfig::clock`](field@MongoConfig::clock)).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the database repositories use.
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }

    /// Sets `server_selection_timeout`.
    pub fn server_selection_timeout(mut self, timeout: Duration) -> Self {
        self.server_selection_timeout = timeout;
        self
    }

    /// Sets `operation_timeout`.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets `max_pool_size`.
    pub fn max_pool_size(mut self, n: u32) -> Self {
        self.max_pool_size = Some(n);
        self
    }
}

pub(crate) fn majority_write_concern() -> WriteConcern {
    let mut concern = WriteConcern::majority();
    concern.w_timeout = Some(Duration::from_secs(10));
    concern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_reads_database_and_pool_and_hides_password() {
        let env = Env::from_fn(|k| match k {
            "MONGODB_URL" => Some("mongodb://u:pw@127.0.0.1:27017/app".into()),
            "MONGODB_DATABASE" => Some("traces".into()),
            "REPOSMITH_MONGO_MAX_POOL_SIZE" => Some("50".into()),
            _ => None,
        });
        let config = MongoConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(config.database.as_deref(), Some("traces"));
        assert_eq!(config.max_pool_size, Some(50));
        assert!(!format!("{config:?}").contains("pw"));
    }

    #[test]
    fn zero_pool_is_rejected() {
        let err = MongoConfig::new("mongodb://h")
            .max_pool_size(0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("max_pool_size"), "{err}");
    }
}
