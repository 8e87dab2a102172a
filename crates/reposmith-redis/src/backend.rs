//! The connected Redis backend: a reconnecting connection manager (or a
//! Redis Cluster connection) built from [`RedisConfig`].

use std::fmt;
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use reposmith_core::{Backend, ConnectionUrl, Error, Result};

use crate::error::{Phase, map};
use crate::{RedisConfig, RedisConnection, cluster, tls};

/// A connected Redis backend, standalone or cluster. Cloning shares the one
/// multiplexed connection.
#[derive(Clone)]
pub struct RedisBackend {
    shared: RedisConnection,
    /// Opens the dedicated connections blocking commands need.
    opener: Opener,
    url: ConnectionUrl,
    /// A cluster's seed nodes (empty for a standalone server): where the
    /// near cache's subscriber connects.
    seeds: Vec<ConnectionUrl>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// The private CA's PEM ([`RedisConfig::tls_ca_file`]), for the
    /// subscriber connections opened later.
    tls_root: Option<Vec<u8>>,
}

/// Health of a Redis server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisHealth {
    /// Host, port and database number, without credentials.
    pub target: String,
    /// `redis_version` from `INFO server`.
    pub server_version: String,
    /// `redis_mode`: standalone, cluster or sentinel.
    pub mode: String,
    /// Time for the `INFO` round trip.
    pub round_trip: Duration,
}

impl fmt::Display for RedisHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redis {} at {} ({}); round trip {:?}",
            self.server_version, self.target, self.mode, self.round_trip
        )
    }
}

impl RedisBackend {
    /// Connects (unless `config.lazy`), failing within the connect budget on an
    /// unreachable server or a rejected password.
    #[tracing::instrument(name = "reposmith.connect", skip_all,
        fields(db.system = "redis", server.address = %config.url.target()))]
    pub async fn connect(config: &RedisConfig) -> Result<Self> {
        config.validate()?;
        let tls_root = tls::root_certificate(config)?;
        if config.is_cluster() {
            return cluster::connect(config, tls_root.as_deref())
                .await
                .map(|(shared, client)| {
                    let opener = Opener::Cluster(Box::new(client));
                    RedisBackend::assemble(config, shared, opener, tls_root)
                });
        }
        let url = config.url.clone();
        let client = tls::client(&url, tls_root.as_deref(), config.connect_timeout)?;
        let manager_config = manager_config(config);
        let manager = if config.lazy {
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
                .map_err(|e| map(&url, &e, Phase::Connect, config.connect_timeout))?
        } else {
            let connected = connect_now(client.clone(), manager_config, config).await;
            connected.inspect_err(|error| tracing::debug!(%error, "connect failed"))?
        };
        let shared = RedisConnection::manager(manager);
        Ok(RedisBackend::assemble(
            config,
            shared,
            Opener::Standalone(Box::new(client)),
            tls_root,
        ))
    }

    fn assemble(
        config: &RedisConfig,
        shared: RedisConnection,
        opener: Opener,
        tls_root: Option<Vec<u8>>,
    ) -> Self {
        RedisBackend {
            shared,
            opener,
            url: config.url.clone(),
            seeds: config.cluster_nodes.clone(),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            tls_root,
        }
    }

    /// A handle on the shared connection; commands time out after the
    /// response timeout. On a cluster it routes each command to its slot.
    pub fn connection(&self) -> RedisConnection {
        self.shared.clone()
    }

    /// True when connected to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.shared.is_cluster()
    }

    /// The longest wait for a reply on the shared connection.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// A connection of its own, for commands that block (`BLPOP`): a blocking
    /// command on the shared multiplexed connection would hold up every
    /// other caller's replies behind it. It has no response timeout (the
    /// caller bounds each command, blocking ones by their own timeout plus
    /// the response timeout) and does not reconnect: drop it after an error
    /// and open another. On a cluster it is a cluster connection of its own
    /// (one connection per node, the slot map read afresh), so a new one
    /// after a failover finds the promoted replica.
    pub(crate) async fn dedicated_connection(&self) -> Result<RedisConnection> {
        // The driver's own connection timeout covers the TCP connect; this
        // bounds the handshake (and on a cluster the slot discovery) too.
        let budget = self.connect_timeout + self.response_timeout;
        let connected = match &self.opener {
            Opener::Standalone(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(None);
                let connect = client.get_multiplexed_async_connection_with_config(&config);
                tokio::time::timeout(budget, connect)
                    .await
                    .map(|c| c.map(RedisConnection::dedicated))
            }
            Opener::Cluster(client) => tokio::time::timeout(budget, client.get_async_connection())
                .await
                .map(|c| c.map(RedisConnection::cluster)),
        };
        match connected {
            Ok(connected) => {
                connected.map_err(|e| map(&self.url, &e, Phase::Connect, self.connect_timeout))
            }
            Err(_) => Err(Error::connect_timed_out(
                Backend::Redis,
                self.target(),
                budget,
            )),
        }
    }

    /// A pub/sub connection subscribed to `channel`, within the connect
    /// budget. On a cluster it goes to seed node `attempt` (modulo their
    /// number): a plain `PUBLISH` reaches every node of a cluster, so any
    /// node serves, and the next attempt after a failure tries the next.
    #[cfg_attr(not(feature = "near-cache"), allow(dead_code))]
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
        attempt: usize,
    ) -> Result<redis::aio::PubSub> {
        let client = match &self.opener {
            Opener::Standalone(client) => (**client).clone(),
            Opener::Cluster(_) => {
                let Some(seed) = self.seeds.get(attempt % self.seeds.len().max(1)) else {
                    return Err(Error::config("redis", "a cluster without seed nodes"));
                };
                tls::client(seed, self.tls_root.as_deref(), self.connect_timeout)?
            }
        };
        let budget = self.connect_timeout + self.response_timeout;
        let subscribed = tokio::time::timeout(budget, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        });
        match subscribed.await {
            Ok(subscribed) => {
                subscribed.map_err(|e| map(&self.url, &e, Phase::Connect, self.connect_timeout))
            }
            Err(_) => Err(Error::connect_timed_out(
                Backend::Redis,
                self.target(),
                budget,
            )),
        }
    }

    /// Host, port and database number, without credentials (on a cluster,
    /// the first seed node's).
    pub fn target(&self) -> &str {
        self.url.target()
    }

    /// Maps a redis-rs error from an operation on this backend onto the core error.
    pub fn map_error(&self, err: &redis::RedisError) -> Error {
        map(&self.url, err, Phase::Operation, self.response_timeout)
    }

    /// Reads `INFO server` and reports the version and round trip.
    #[tracing::instrument(name = "reposmith.ping", skip_all, fields(db.system = "redis"))]
    pub async fn ping(&self) -> Result<RedisHealth> {
        let started = Instant::now();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.connection())
            .await
            .map_err(|e| self.map_error(&e))?;
        Ok(RedisHealth {
            target: self.target().to_owned(),
            server_version: info_field(&info, "redis_version")
                .unwrap_or("unknown")
                .to_owned(),
            mode: info_field(&info, "redis_mode")
                .unwrap_or("standalone")
                .to_owned(),
            round_trip: started.elapsed(),
        })
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .finish()
    }
}

/// How the backend opens a dedicated connection.
#[derive(Clone)]
enum Opener {
    Standalone(Box<redis::Client>),
    /// Builds connections with no response timeout of their own.
    Cluster(Box<ClusterClient>),
}

fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
        .set_number_of_retries(config.reconnect_retries)
        .set_max_delay(config.reconnect_max_delay)
}

/// Connects eagerly. The manager retries internally; the outer deadline is the
/// whole retry budget, so even a server that accepts TCP and never answers
/// cannot hold startup longer than that.
async fn connect_now(
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    config: &RedisConfig,
) -> Result<ConnectionManager> {
    let attempts = config.reconnect_retries as u32 + 1;
    let budget = (config.connect_timeout + config.response_timeout) * attempts
        + config.reconnect_max_delay * (attempts - 1);
    connect_within(
        budget,
        config,
        ConnectionManager::new_with_config(client, manager_config),
    )
    .await
}

/// Runs a connect under `budget`: past it, a typed timeout; a driver error
/// mapped as a connect failure.
pub(crate) async fn connect_within<T>(
    budget: Duration,
    config: &RedisConfig,
    connect: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    tokio::time::timeout(budget, connect)
        .await
        .map_err(|_| Error::Timeout {
            backend: Backend::Redis,
            operation: "connect",
            after: budget,
        })?
        .map_err(|e| map(&config.url, &e, Phase::Connect, config.connect_timeout))
}

/// The value of `key` in an `INFO` reply (`key:value` lines).
fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::info_field;

    #[test]
    fn reads_info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "redis_mode"), Some("standalone"));
        assert_eq!(info_field(info, "missing"), None);
    }
}
