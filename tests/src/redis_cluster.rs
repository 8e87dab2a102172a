//! The Redis Cluster of `cargo xtask services up --cluster` (3 masters, 3
//! replicas, node timeout 2 s), named by `REDIS_CLUSTER_URLS`: which master
//! owns a key's slot, whether its replica is in sync, and killing it to
//! force a failover.
//!
//! Every call talks to one node over a plain connection of its own,
//! bounded by `CALL_TIMEOUT`.

use std::time::{Duration, Instant};

use reposmith::redis::{self, aio::MultiplexedConnection};

use crate::service_url;

/// Longest wait for one command to one node.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The seed node URLs from `REDIS_CLUSTER_URLS`; panics with how to start
/// the cluster when it is unset.
pub fn cluster_urls() -> Vec<String> {
    let urls = service_url("REDIS_CLUSTER_URLS");
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `127.0.0.1:57001`.
    pub address: String,
    /// Its `redis-server` process, from `INFO server`.
    pub pid: u32,
}

/// Runs `cmd` on the node at `address` (`host:port`).
pub async fn ask<T: redis::FromRedisValue>(
    address: &str,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let call = async {
        let mut conn = connect(address).await?;
        cmd.query_async(&mut conn).await
    };
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{address} did not answer within {CALL_TIMEOUT:?}"),
        ))),
    }
}

async fn connect(address: &str) -> redis::RedisResult<MultiplexedConnection> {
    redis::Client::open(format!("redis://{address}"))?
        .get_multiplexed_async_connection()
        .await
}

/// The master serving `key`'s slot, as the first answering seed node sees it.
pub async fn master_of(key: &str) -> Node {
    let mut last = String::new();
    for url in cluster_urls() {
        let seed = url.trim_start_matches("redis://").to_owned();
        let slot: redis::RedisResult<u16> =
            ask(&seed, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await;
        let nodes: redis::RedisResult<String> =
            ask(&seed, redis::cmd("CLUSTER").arg("NODES")).await;
        match (slot, nodes) {
            (Ok(slot), Ok(nodes)) => {
                if let Some(address) = serving(&nodes, slot) {
                    let pid = pid_of(&address).await;
                    return Node { address, pid };
                }
                last = format!("{seed} names no live master for slot {slot}");
            }
            (Err(e), _) | (_, Err(e)) => last = e.to_string(),
        }
    }
    panic!("no master found for {key}: {last}");
}

/// The address of the live master whose slot ranges hold `slot`, from a
/// `CLUSTER NODES` reply (`id addr@bus flags master ping pong epoch link slots...`).
fn serving(nodes: &str, slot: u16) -> Option<String> {
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = *fields.get(2)?;
        if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
            return None;
        }
        let holds = fields.iter().skip(8).any(|range| {
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            match (from.parse::<u16>(), to.parse::<u16>()) {
                (Ok(from), Ok(to)) => (from..=to).contains(&slot),
                _ => false,
            }
        });
        holds.then(|| fields[1].split('@').next().unwrap_or_default().to_owned())
    })
}

/// The `process_id` a node reports.
async fn pid_of(address: &str) -> u32 {
    let info: String = ask(address, redis::cmd("INFO").arg("server"))
        .await
        .unwrap_or_else(|e| panic!("INFO server on {address}: {e}"));
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("{address} reports no process_id"))
}

/// Waits up to `within` until `master` has a replica that is online and
/// caught up (its offset equals the master's); panics with how to repair
/// the cluster otherwise.
pub async fn await_synced_replica(master: &Node, within: Duration) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < within {
        match ask::<String>(&master.address, redis::cmd("INFO").arg("replication")).await {
            Ok(info) if synced(&info) => return,
            Ok(info) => last = info,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "master {} has no replica in sync after {within:?} (a node killed by an earlier run \
         and not restarted? `cargo xtask services up --cluster` restarts it): {last}",
        master.address
    );
}

/// `INFO replication` of a master with an online replica at its offset.
fn synced(info: &str) -> bool {
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    let Some(offset) = field("master_repl_offset:") else {
        return false;
    };
    let replica = field("slave0:").unwrap_or_default();
    replica.contains("state=online") && replica.contains(&format!("offset={offset},"))
}

/// Kills `node` with SIGKILL after checking that its pid is a
/// `redis-server` serving its port.
pub fn kill(node: &Node) {
    signal(node, "-KILL");
}

/// Freezes `node` with SIGSTOP (to the cluster it is dead: it answers
/// nothing, and its replica is promoted), after the same check as [`kill`].
/// [`thaw`] resumes it: it then learns of the newer epoch and rejoins as a
/// replica, so the cluster is whole again with the same processes.
pub fn freeze(node: &Node) {
    signal(node, "-STOP");
}

/// Resumes a node [`freeze`] stopped.
pub fn thaw(node: &Node) {
    signal(node, "-CONT");
}

fn signal(node: &Node, signal: &str) {
    let port = node.address.rsplit(':').next().unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", node.pid)).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        cmdline.contains("redis-server") && cmdline.contains(&format!(":{port}")),
        "pid {} is not the redis-server of {}: {cmdline:?}",
        node.pid,
        node.address
    );
    let status = std::process::Command::new("kill")
        .args([signal, &node.pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {} failed", node.pid);
}

/// Whether `master` has a replica online at its replication offset now.
pub async fn has_synced_replica(master: &Node) -> bool {
    let info = ask::<String>(&master.address, redis::cmd("INFO").arg("replication")).await;
    info.is_ok_and(|info| synced(&info))
}

/// Waits up to `within` until a master other than `dead` serves `key`'s slot.
pub async fn await_failover(key: &str, dead: &Node, within: Duration) -> Node {
    let started = Instant::now();
    while started.elapsed() < within {
        let cmd = redis::cmd("CLUSTER").arg("NODES").clone();
        for url in cluster_urls() {
            let seed = url.trim_start_matches("redis://").to_owned();
            if seed == dead.address {
                continue;
            }
            let slot: redis::RedisResult<u16> =
                ask(&seed, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await;
            if let (Ok(slot), Ok(nodes)) = (slot, ask::<String>(&seed, &cmd).await)
                && let Some(address) = serving(&nodes, slot)
                && address != dead.address
            {
                let pid = pid_of(&address).await;
                return Node { address, pid };
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no replica of {} was promoted within {within:?}",
        dead.address
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_master_of_a_slot() {
        let nodes = "a 127.0.0.1:57001@57101 myself,master - 0 0 1 connected 0-5460\n\
                     b 127.0.0.1:57004@57104 slave a 0 0 1 connected\n\
                     c 127.0.0.1:57002@57102 master,fail - 0 0 2 connected 5461-10922\n\
                     d 127.0.0.1:57005@57105 master - 0 0 4 connected 5461-10922\n";
        assert_eq!(serving(nodes, 523).as_deref(), Some("127.0.0.1:57001"));
        assert_eq!(serving(nodes, 6000).as_deref(), Some("127.0.0.1:57005"));
        assert_eq!(serving(nodes, 16000), None);
    }

    #[test]
    fn a_replica_is_synced_at_the_masters_offset() {
        let info = "role:master\r\nconnected_slaves:1\r\n\
                    slave0:ip=127.0.0.1,port=57004,state=online,offset=42,lag=0\r\n\
                    master_repl_offset:42\r\n";
        assert!(synced(info));
        assert!(!synced(&info.replace("offset=42", "offset=41")));
    }
}
