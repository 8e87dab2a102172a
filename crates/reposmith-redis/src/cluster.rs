//! Connecting to a Redis Cluster: the driver's cluster client with the
//! config's timeouts, and short retry pauses so a command's redirects and
//! retries fit inside its response timeout.
//!
//! The driver routes each command to the master of its key's slot, follows
//! `MOVED` and `ASK`, refreshes the slot map when a node answers `MOVED` or
//! `READONLY` or cannot be reached, and retries a command whose node
//! dropped (up to [`RETRIES`] times, paused 10 ms growing to
//! `reconnect_max_delay`). The whole of it is bounded by `response_timeout`
//! on the shared connection; dedicated connections have no timeout of their
//! own and are bounded by their caller.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use reposmith_core::Result;

use crate::backend::connect_within;
use crate::error::{Phase, map};
use crate::{RedisConfig, RedisConnection};

/// Retries of one command inside the driver (a dropped node, `MOVED`,
/// `TRYAGAIN`, `CLUSTERDOWN`); the response timeout usually ends them first.
const RETRIES: u32 = 8;
/// First pause between retries, in ms.
const MIN_RETRY_WAIT_MS: u64 = 10;

/// The shared connection (with timeouts) and the client dedicated
/// connections come from (without).
pub(crate) async fn connect(
    config: &RedisConfig,
    tls_root: Option<&[u8]>,
) -> Result<(RedisConnection, ClusterClient)> {
    let fail = |e: redis::RedisError| map(&config.url, &e, Phase::Connect, config.connect_timeout);
    let shared = builder(config, tls_root)
        .response_timeout(config.response_timeout)
        .build()
        .map_err(fail)?;
    let dedicated = builder(config, tls_root)
        .overall_response_timeout(None)
        .build()
        .map_err(fail)?;
    if config.lazy {
        let pending = shared.get_pending_async_connection_with_config(
            redis::cluster::ClusterConfig::new()
                .set_connection_timeout(config.connect_timeout)
                .set_response_timeout(config.response_timeout),
        );
        return Ok((RedisConnection::cluster(pending), dedicated));
    }
    // Connecting reads the slot map from a seed node, then connects to every
    // node; each attempt is bounded by connect_timeout, the whole by this.
    let budget = (config.connect_timeout + config.response_timeout) * 2;
    let connected = connect_within(budget, config, shared.get_async_connection()).await?;
    Ok((RedisConnection::cluster(connected), dedicated))
}

/// `tls_root`: the private CA's PEM ([`RedisConfig::tls_ca_file`]); without
/// the `tls` feature `validate` has already refused a CA file.
fn builder(config: &RedisConfig, tls_root: Option<&[u8]>) -> ClusterClientBuilder {
    let nodes: Vec<String> = config
        .cluster_nodes
        .iter()
        .map(|url| url.expose().to_owned())
        .collect();
    let builder = ClusterClient::builder(nodes)
        .connection_timeout(config.connect_timeout)
        .retries(RETRIES)
        .min_retry_wait(MIN_RETRY_WAIT_MS)
        .max_retry_wait(millis(config.reconnect_max_delay).max(MIN_RETRY_WAIT_MS + 1));
    match tls_root {
        #[cfg(feature = "tls")]
        Some(root) => builder.certs(crate::tls::certificates(root)),
        _ => builder,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
