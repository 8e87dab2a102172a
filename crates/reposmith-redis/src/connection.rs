//! [`RedisConnection`]: one handle type over a standalone server's
//! connections and a Redis Cluster's, so the queue and the application run
//! one code path on both.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// A connection to Redis, standalone or cluster; implements
/// [`ConnectionLike`], so every command of the `redis` crate (and
/// [`AsyncCommands`](redis::AsyncCommands)) works on it. Cloning is cheap and
/// shares the underlying connection.
///
/// On a cluster each command goes to the master of its first key's slot;
/// a pipeline goes to the slot of its first keyed command, so keep a
/// pipeline's keys in one slot (hash tags: `{user:42}:a`, `{user:42}:b`).
#[derive(Clone)]
pub struct RedisConnection(Inner);

#[derive(Clone)]
enum Inner {
    /// The backend's shared, reconnecting connection to a standalone server.
    Manager(ConnectionManager),
    /// A dedicated connection to a standalone server (blocking commands).
    Dedicated(MultiplexedConnection),
    /// A cluster connection: per node one multiplexed connection, slot map,
    /// redirects and failover handled by the driver.
    Cluster(ClusterConnection),
}

impl RedisConnection {
    pub(crate) fn manager(manager: ConnectionManager) -> Self {
        RedisConnection(Inner::Manager(manager))
    }

    pub(crate) fn dedicated(connection: MultiplexedConnection) -> Self {
        RedisConnection(Inner::Dedicated(connection))
    }

    pub(crate) fn cluster(connection: ClusterConnection) -> Self {
        RedisConnection(Inner::Cluster(connection))
    }

    /// True on a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }

    /// Sends `cmd` to every master of a cluster (to the server, standalone)
    /// and returns each one's reply with its address.
    pub(crate) async fn on_every_master(&mut self, cmd: Cmd) -> RedisResult<Vec<(String, Value)>> {
        let Inner::Cluster(cluster) = &mut self.0 else {
            let reply = cmd.query_async(self).await?;
            return Ok(vec![(String::new(), reply)]);
        };
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        match cluster.route_command(cmd, routing).await? {
            Value::Map(replies) => replies
                .into_iter()
                .map(|(node, reply)| Ok((node_name(&node), reply.extract_error()?)))
                .collect(),
            other => Ok(vec![(String::new(), other)]),
        }
    }

    /// `WAIT replicas timeout` on the connection that wrote `key`: on a
    /// cluster, the master of `key`'s slot (the driver keeps one connection
    /// per node, so it is the connection the write went through). Returns
    /// how many replicas acknowledged this connection's writes.
    pub(crate) async fn wait_for_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<i64> {
        let millis = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(millis);
        let Inner::Cluster(cluster) = &mut self.0 else {
            return wait.query_async(self).await;
        };
        let route = Route::with_key(key, SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let reply = cluster.route_command(wait, routing).await?;
        Ok(redis::from_redis_value(reply)?)
    }
}

/// A node's address as the driver reports it in a fan-out reply.
fn node_name(node: &Value) -> String {
    match node {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        other => format!("{other:?}"),
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Manager(c) => c.req_packed_command(cmd),
            Inner::Dedicated(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Dedicated(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Manager(c) => c.get_db(),
            Inner::Dedicated(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            Inner::Manager(_) => "shared",
            Inner::Dedicated(_) => "dedicated",
            Inner::Cluster(_) => "cluster",
        };
        f.debug_tuple("RedisConnection").field(&kind).finish()
    }
}
