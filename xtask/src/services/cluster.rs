//! `services up --cluster`: a Redis Cluster of six OS `redis-server`
//! processes (3 masters, 3 replicas) on 127.0.0.1:21001-21006 (or the next
//! free block of the same shape: 22001-22006, ...), for tests of
//! slot routing and failover. Started by `up --cluster` and by
//! `cargo xtask test` (whose queue failover test kills a master).
//!
//! Each node has its own directory under `<state>/redis-cluster/` with its
//! `nodes.conf`, log and append-only file, and its cluster bus on the client
//! port + 100 (the default, + 10000, would land in the ephemeral range).
//! The record `<state>/redis-cluster.state` lists the ports and, per port,
//! the pid (`pid.21001=...`), so `down` stops exactly these processes.
//!
//! The blocks sit below Linux's ephemeral port range (32768-60999): the
//! machine's own daemons keep loopback client connections open, and one of
//! those holding a port of a block in that range made `up` fail in CI.
//!
//! A test finds the master of a key's slot through the `redis` crate:
//! `CLUSTER KEYSLOT key`, then `CLUSTER SHARDS` (or `CLUSTER NODES`) on any
//! node names the master serving that slot; `INFO server` on that master
//! gives its `process_id`, which the test may kill to force a failover.
//! `services env` also exports `REDIS_CLUSTER_PIDS=21001:pid,...` as
//! recorded. A later `up --cluster` starts any node that is no longer
//! running from its own `nodes.conf`, so it rejoins (as a replica, when its
//! replica was promoted meanwhile); `down` stops the nodes and removes
//! their directories, so the next `up --cluster` makes a fresh cluster.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::cluster_info;
use super::process::{self, log_tail};
use super::redis::{find_on_path, pings};
use super::state::Record;
use super::{Ctx, label, text};
use crate::cmd;
use crate::error::{Context, Error};

/// First client port of each block `create` may use, in order of
/// preference; a block is that port and the five after it.
const BASES: [u16; 4] = [21001, 22001, 23001, 24001];
/// Nodes per cluster.
const NODES: usize = 6;
/// The cluster bus port is the client port plus this.
const BUS_OFFSET: u16 = 100;
const MASTERS: usize = 3;
/// How long the nodes get to answer PING after they fork.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `redis-cli --cluster create` may take (about 2 s here).
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long every node gets to report the whole cluster.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// One `redis-cli` call against a node.
const CLI_TIMEOUT: Duration = Duration::from_secs(2);

/// Files of the cluster, all under `<state>/redis-cluster`.
struct Paths {
    dir: PathBuf,
    record: PathBuf,
}

impl Paths {
    fn new(ctx: &Ctx) -> Self {
        Self {
            dir: ctx.dir().join("redis-cluster"),
            record: ctx.dir().join("redis-cluster.state"),
        }
    }

    fn node_dir(&self, port: u16) -> PathBuf {
        self.dir.join(format!("node-{port}"))
    }

    fn log(&self, port: u16) -> PathBuf {
        self.node_dir(port).join("redis.log")
    }

    fn pid_file(&self, port: u16) -> PathBuf {
        self.node_dir(port).join("redis.pid")
    }
}

/// A running cluster: per node its port and pid.
#[derive(Debug)]
pub(super) struct Cluster {
    nodes: Vec<(u16, u32)>,
    fresh: bool,
    /// Nodes of a created cluster started again by this `up`.
    restarted: Vec<u16>,
    elapsed: Duration,
}

impl Cluster {
    /// One line for people, like the other services'.
    pub(super) fn describe(&self) -> String {
        let pids: Vec<String> = self.nodes.iter().map(|(_, pid)| pid.to_string()).collect();
        let how = if self.fresh {
            format!("started in {:.1} s", self.elapsed.as_secs_f64())
        } else if !self.restarted.is_empty() {
            let ports: Vec<String> = self.restarted.iter().map(u16::to_string).collect();
            let secs = self.elapsed.as_secs_f64();
            format!("restarted node(s) {} in {secs:.1} s", ports.join(" "))
        } else {
            "running (started by xtask)".to_owned()
        };
        format!(
            "{}{how}, 3 masters + 3 replicas (pids {}) at {}",
            label("cluster"),
            pids.join(" "),
            self.urls()
        )
    }

    /// True when this `up` created the cluster.
    pub(super) fn created(&self) -> bool {
        self.fresh
    }

    /// `redis://127.0.0.1:P1,redis://127.0.0.1:P2,...`
    fn urls(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}"))
            .collect();
        urls.join(",")
    }

    /// The variables `services env` prints.
    pub(super) fn vars(&self) -> Vec<(&'static str, String)> {
        let pids: Vec<String> = self
            .nodes
            .iter()
            .map(|(port, pid)| format!("{port}:{pid}"))
            .collect();
        vec![
            ("REDIS_CLUSTER_URLS", self.urls()),
            ("REDIS_CLUSTER_PIDS", pids.join(",")),
        ]
    }
}

/// Brings the cluster up: reused when every node runs, nodes that stopped
/// restarted from their `nodes.conf`, or made fresh.
pub(super) fn up(ctx: &Ctx) -> Result<Cluster, Error> {
    let started = Instant::now();
    let paths = Paths::new(ctx);
    let server = find_on_path("redis-server").ok_or_else(|| {
        Error::msg("redis-server not found: install it (Debian: apt-get install redis-server)")
    })?;
    let cli = find_on_path("redis-cli").ok_or_else(|| {
        Error::msg("redis-cli not found: install it (Debian: apt-get install redis-tools)")
    })?;
    let recorded = recorded(&paths);
    let fresh = recorded.is_none();
    let nodes = match &recorded {
        Some(pids) => resume(&server, &paths, pids)?,
        None => create(&server, &cli, &paths)?,
    };
    let restarted = recorded
        .iter()
        .flatten()
        .filter(|(port, pid)| !nodes.contains(&(*port, *pid)))
        .map(|(port, _)| *port)
        .collect();
    let cluster = Cluster {
        nodes,
        fresh,
        restarted,
        elapsed: Duration::ZERO,
    };
    save(&paths, &cluster)?;
    let ports: Vec<u16> = cluster.nodes.iter().map(|(port, _)| *port).collect();
    if let Err(why) = wait_whole(&cli, &ports) {
        return Err(Error::msg(format!(
            "redis cluster: not whole within {} s: {why}\n{}",
            READY_TIMEOUT.as_secs(),
            log_tail(&paths.log(ports[0]), 20)
        )));
    }
    Ok(Cluster {
        elapsed: started.elapsed(),
        ..cluster
    })
}

/// The recorded pid of each port (0 when none), if a cluster was created.
fn recorded(paths: &Paths) -> Option<Vec<(u16, u32)>> {
    let record = Record::load(&paths.record)?;
    let ports = recorded_ports(&record)?;
    let conf = |port| paths.node_dir(port).join("nodes.conf").is_file();
    ports.iter().all(|port| conf(*port)).then(|| {
        ports
            .iter()
            .map(|port| (*port, record.number(&format!("pid.{port}")).unwrap_or(0)))
            .collect()
    })
}

/// The six client ports a record lists, if it lists six.
fn recorded_ports(record: &Record) -> Option<Vec<u16>> {
    let ports: Vec<u16> = record
        .get("ports")?
        .split(',')
        .map(|port| port.trim().parse().ok())
        .collect::<Option<_>>()?;
    (ports.len() == NODES).then_some(ports)
}

/// The client ports of the block starting at `base`.
fn block(base: u16) -> Vec<u16> {
    (0..NODES as u16).map(|i| base + i).collect()
}

/// The first block whose client and bus ports nothing listens on.
fn free_block() -> Result<Vec<u16>, Error> {
    let free = |port: u16| process::port_free(port) && process::port_free(port + BUS_OFFSET);
    BASES
        .iter()
        .map(|base| block(*base))
        .find(|ports| ports.iter().all(|port| free(*port)))
        .ok_or_else(|| {
            let blocks: Vec<String> = BASES
                .iter()
                .map(|base| format!("{base}-{}", base + NODES as u16 - 1))
                .collect();
            Error::msg(format!(
                "redis cluster: every block of client ports ({}) or its bus ports \
                 (client + {BUS_OFFSET}) on 127.0.0.1 has a port in use by a process xtask \
                 did not start: free one block",
                blocks.join(", ")
            ))
        })
}

/// Starts the nodes of a created cluster that no longer run.
fn resume(server: &Path, paths: &Paths, pids: &[(u16, u32)]) -> Result<Vec<(u16, u32)>, Error> {
    let mut nodes = Vec::new();
    for &(port, pid) in pids {
        if owns(pid, port) {
            nodes.push((port, pid));
            continue;
        }
        refuse_if_taken(port)?;
        spawn(server, paths, port)?;
        nodes.push((port, 0));
    }
    let restarted: Vec<u16> = nodes
        .iter()
        .filter(|(_, pid)| *pid == 0)
        .map(|(p, _)| *p)
        .collect();
    let pids = await_pids(paths, &restarted)?;
    Ok(nodes
        .into_iter()
        .map(|(port, pid)| (port, pids.get(&port).copied().unwrap_or(pid)))
        .collect())
}

/// A fresh cluster: empty directories, six nodes, `redis-cli --cluster create`.
fn create(server: &Path, cli: &Path, paths: &Paths) -> Result<Vec<(u16, u32)>, Error> {
    let ports = free_block()?;
    if paths.dir.exists() {
        fs::remove_dir_all(&paths.dir).context(format!("cannot clear {}", paths.dir.display()))?;
    }
    let mut started = Vec::new();
    let result = (|| {
        for &port in &ports {
            spawn(server, paths, port)?;
            started.push(port);
        }
        let pids = await_pids(paths, &ports)?;
        let nodes: Vec<(u16, u32)> = ports.iter().map(|p| (*p, pids[p])).collect();
        form(cli, paths, &ports)?;
        Ok(nodes)
    })();
    if result.is_err() {
        // Stop what this call started: pids from the pid files, checked
        // against the command line as everywhere else.
        let pids: Vec<u32> = started
            .iter()
            .filter_map(|port| pid_from_file(paths, *port).filter(|pid| owns(*pid, *port)))
            .collect();
        process::stop(&pids);
    }
    result
}

/// Refuses to restart a node whose port (or bus port) something else
/// listens on: the created cluster's nodes know each other by port.
fn refuse_if_taken(port: u16) -> Result<(), Error> {
    for p in [port, port + BUS_OFFSET] {
        if !process::port_free(p) {
            return Err(Error::msg(format!(
                "redis cluster: port {p} on 127.0.0.1 (node {port}) is in use by a process \
                 xtask did not start: stop that process, or `cargo xtask services down` and \
                 `up` again for a fresh cluster on a free block"
            )));
        }
    }
    Ok(())
}

/// Starts one node as a daemon in its own directory; returns once it forked.
fn spawn(server: &Path, paths: &Paths, port: u16) -> Result<(), Error> {
    let dir = paths.node_dir(port);
    fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
    let _ = fs::remove_file(paths.pid_file(port));
    let mut redis = Command::new(server);
    redis.args(["--daemonize", "yes", "--bind", "127.0.0.1"]);
    redis.args(["--port", &port.to_string()]);
    redis.args(["--cluster-port", &(port + BUS_OFFSET).to_string()]);
    redis.args([
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    redis.args(["--cluster-node-timeout", "2000"]);
    redis.args(["--maxmemory-policy", "noeviction"]);
    redis.args(["--appendonly", "yes", "--save", ""]);
    // A master waits 5 s by default for more replicas before it streams a
    // full sync; each of ours has one replica, so waiting only delays `up`.
    redis.args(["--repl-diskless-sync-delay", "0"]);
    redis.arg("--dir").arg(&dir);
    redis.arg("--logfile").arg(paths.log(port));
    redis.arg("--pidfile").arg(paths.pid_file(port));
    redis.current_dir(&dir);
    let status = cmd::run_logged(&mut redis, &dir.join("start.log"), START_TIMEOUT)?;
    if !status.success() {
        return Err(Error::msg(format!(
            "redis cluster: node {port} failed to start\n{}",
            log_tail(&paths.log(port), 20)
        )));
    }
    Ok(())
}

/// Waits until each of `ports` answers PING and has written its pid file.
fn await_pids(paths: &Paths, ports: &[u16]) -> Result<std::collections::HashMap<u16, u32>, Error> {
    let ready = |port: u16| pings(port) && pid_from_file(paths, port).is_some();
    if !process::wait_until(START_TIMEOUT, || ports.iter().all(|p| ready(*p))) {
        let late = ports.iter().find(|p| !ready(**p)).copied().unwrap_or(0);
        return Err(Error::msg(format!(
            "redis cluster: node {late} not answering PING within {} s\n{}",
            START_TIMEOUT.as_secs(),
            log_tail(&paths.log(late), 20)
        )));
    }
    Ok(ports
        .iter()
        .filter_map(|p| Some((*p, pid_from_file(paths, *p)?)))
        .collect())
}

/// `redis-cli --cluster create`: assigns the slots and pairs the replicas.
fn form(cli: &Path, paths: &Paths, ports: &[u16]) -> Result<(), Error> {
    let log = paths.dir.join("create.log");
    let mut create = Command::new(cli);
    create.args(["--cluster", "create"]);
    create.args(ports.iter().map(|p| format!("127.0.0.1:{p}")));
    create.args(["--cluster-replicas", "1", "--cluster-yes"]);
    let status = cmd::run_logged(&mut create, &log, CREATE_TIMEOUT)?;
    if !status.success() {
        return Err(Error::msg(format!(
            "redis cluster: `redis-cli --cluster create` failed\n{}",
            log_tail(&log, 30)
        )));
    }
    Ok(())
}

/// Waits until every node sees the whole cluster and every replica's link
/// to its master is up; the last reason it was not, on timeout.
fn wait_whole(cli: &Path, ports: &[u16]) -> Result<(), String> {
    let mut why = String::new();
    let whole = process::wait_until(READY_TIMEOUT, || match check(cli, ports) {
        Ok(()) => true,
        Err(reason) => {
            why = reason;
            false
        }
    });
    if whole { Ok(()) } else { Err(why) }
}

/// Why the cluster is not whole yet, as seen from each node in turn.
fn check(cli: &Path, ports: &[u16]) -> Result<(), String> {
    for &port in ports {
        let info = ask(cli, port, &["cluster", "info"]).ok_or(format!("{port} does not answer"))?;
        if !cluster_info::state_ok(&info) {
            return Err(format!("{port}: cluster_state is not ok"));
        }
        let view = ask(cli, port, &["cluster", "nodes"]).unwrap_or_default();
        let view = cluster_info::nodes(&view);
        cluster_info::whole(&view, MASTERS, NODES - MASTERS)
            .map_err(|why| format!("{port} sees {why}"))?;
        let me = view.iter().find(|n| n.port == port);
        if me.is_some_and(|n| !n.master) {
            let replication = ask(cli, port, &["info", "replication"]).unwrap_or_default();
            if !cluster_info::replica_link_up(&replication) {
                return Err(format!("replica {port}: link to its master is not up"));
            }
        }
    }
    Ok(())
}

/// One `redis-cli` command against a node; its output, or `None`.
fn ask(cli: &Path, port: u16, words: &[&str]) -> Option<String> {
    let mut command = Command::new(cli);
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    command.args(words);
    cmd::capture(&mut command, CLI_TIMEOUT)
}

fn save(paths: &Paths, cluster: &Cluster) -> Result<(), Error> {
    let ports: Vec<String> = cluster.nodes.iter().map(|(p, _)| p.to_string()).collect();
    let record = cluster.nodes.iter().fold(
        Record::default()
            .with("ports", ports.join(","))
            .with("dir", text(&paths.dir)),
        |record, (port, pid)| record.with(&format!("pid.{port}"), pid),
    );
    record.save(&paths.record)
}

fn pid_from_file(paths: &Paths, port: u16) -> Option<u32> {
    fs::read_to_string(paths.pid_file(port))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A node shows `redis-server 127.0.0.1:PORT [cluster]` as its command line.
fn owns(pid: u32, port: u16) -> bool {
    pid != 0 && process::is_ours(pid, &["redis-server", &format!(":{port}"), "[cluster]"])
}

/// The recorded nodes that still run, when at least one does.
fn live(paths: &Paths) -> Vec<(u16, u32)> {
    let Some(record) = Record::load(&paths.record) else {
        return Vec::new();
    };
    recorded_ports(&record)
        .unwrap_or_default()
        .iter()
        .filter_map(|port| Some((*port, record.number::<u32>(&format!("pid.{port}"))?)))
        .filter(|(port, pid)| owns(*pid, *port))
        .collect()
}

/// Running (all six nodes answer), degraded, or stopped.
pub(super) fn status(ctx: &Ctx) -> Result<Cluster, String> {
    let nodes = live(&Paths::new(ctx));
    match nodes.len() {
        0 => Err("stopped (start it with `cargo xtask services up --cluster`)".to_owned()),
        n if n < NODES => Err(format!(
            "{n} of {NODES} nodes running: `cargo xtask services up --cluster` restarts the others"
        )),
        _ => Ok(Cluster {
            nodes,
            fresh: false,
            restarted: Vec::new(),
            elapsed: Duration::ZERO,
        }),
    }
}

/// Stops our nodes and removes their directories; nothing else is touched.
pub(super) fn down(ctx: &Ctx) -> Result<Vec<String>, Error> {
    let paths = Paths::new(ctx);
    let pids: Vec<u32> = live(&paths).iter().map(|(_, pid)| *pid).collect();
    if pids.is_empty() && !paths.record.exists() {
        return Ok(Vec::new());
    }
    let how = match (pids.is_empty(), process::stop(&pids)) {
        (true, _) => "not running, nothing to stop".to_owned(),
        (false, true) => format!("killed after 10 s ({} nodes)", pids.len()),
        (false, false) => format!("stopped ({} nodes)", pids.len()),
    };
    if paths.dir.exists() {
        fs::remove_dir_all(&paths.dir).context(format!("cannot remove {}", paths.dir.display()))?;
    }
    let _ = fs::remove_file(&paths.record);
    Ok(vec![format!("{}{how}", label("cluster"))])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `down` of a state directory where no cluster ever ran says nothing
    /// and stops nothing.
    #[test]
    fn down_without_a_cluster_is_silent() {
        let dir = std::env::temp_dir().join(format!("xtask-cluster-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let paths = Paths {
            dir: dir.join("redis-cluster"),
            record: dir.join("redis-cluster.state"),
        };
        assert!(live(&paths).is_empty());
        assert!(recorded(&paths).is_none());
        fs::remove_dir_all(dir).unwrap();
    }

    /// Every port of every block, bus ports included, is below Linux's
    /// ephemeral range, so no client connection can be holding it.
    #[test]
    fn blocks_stay_below_the_ephemeral_range() {
        for base in BASES {
            let ports = block(base);
            assert_eq!(ports.len(), NODES);
            assert!(ports.iter().all(|p| p + BUS_OFFSET < 32768), "{ports:?}");
        }
    }

    /// A record's port list reads back, and a damaged one reads as none.
    #[test]
    fn ports_read_back_from_the_record() {
        let record = Record::default().with("ports", "21001,21002,21003,21004,21005,21006");
        assert_eq!(recorded_ports(&record), Some(block(21001)));
        let short = Record::default().with("ports", "21001,21002");
        assert_eq!(recorded_ports(&short), None);
        let junk = Record::default().with("ports", "21001,x,21003,21004,21005,21006");
        assert_eq!(recorded_ports(&junk), None);
    }
}
