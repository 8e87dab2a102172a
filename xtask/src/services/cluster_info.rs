//! Reading what a Redis Cluster node says about the cluster: `CLUSTER INFO`,
//! `CLUSTER NODES` and `INFO replication`, as `redis-cli` prints them.
//!
//! By hand, because xtask is std-only; only the fields that decide "is the
//! cluster whole" are read.

/// Hash slots of a Redis Cluster.
pub(crate) const SLOTS: u32 = 16384;

/// The value of `key` in `key:value` lines (`CLUSTER INFO`, `INFO`).
pub(crate) fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix(':'))
}

/// True when `CLUSTER INFO` says every slot is served.
pub(crate) fn state_ok(info: &str) -> bool {
    field(info, "cluster_state") == Some("ok")
}

/// True when `INFO replication` of a replica says its link to the master is up.
pub(crate) fn replica_link_up(info: &str) -> bool {
    field(info, "master_link_status") == Some("up")
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The node's 40-character id.
    pub(crate) id: String,
    /// Its client port (the `ip:port@busport` field).
    pub(crate) port: u16,
    /// True for a master, false for a replica.
    pub(crate) master: bool,
    /// The id of its master, for a replica.
    pub(crate) master_id: Option<String>,
    /// True when a flag says the node is not (yet) a healthy member:
    /// `fail`, `fail?`, `handshake` or `noaddr`.
    pub(crate) unhealthy: bool,
    /// True when the cluster bus link to it is `connected`.
    pub(crate) connected: bool,
    /// How many slots it serves (ranges `a-b` and single slots; slots being
    /// migrated, `[...]`, are not counted).
    pub(crate) slots: u32,
}

/// Parses `CLUSTER NODES`; lines that do not parse are skipped.
pub(crate) fn nodes(text: &str) -> Vec<Node> {
    text.lines().filter_map(node).collect()
}

fn node(line: &str) -> Option<Node> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [
        id,
        addr,
        flags,
        master,
        _ping,
        _pong,
        _epoch,
        link,
        slots @ ..,
    ] = fields.as_slice()
    else {
        return None;
    };
    // `127.0.0.1:57001@57101`, or with a hostname: `ip:port@bus,host`.
    let host_port = addr.split('@').next()?;
    let port = host_port.rsplit_once(':')?.1.parse().ok()?;
    let flags: Vec<&str> = flags.split(',').collect();
    let unhealthy = ["fail", "fail?", "handshake", "noaddr"];
    Some(Node {
        id: (*id).to_owned(),
        port,
        master: flags.contains(&"master"),
        master_id: (*master != "-").then(|| (*master).to_owned()),
        unhealthy: flags.iter().any(|f| unhealthy.contains(f)),
        connected: *link == "connected",
        slots: slots.iter().map(|s| slot_count(s)).sum(),
    })
}

/// Slots in one slot field: `0-5460` is 5461, `42` is 1, `[...]` is 0.
fn slot_count(field: &str) -> u32 {
    if field.starts_with('[') {
        return 0;
    }
    let parse = |s: &str| s.parse::<u32>().ok();
    match field.split_once('-') {
        Some((a, b)) => match (parse(a), parse(b)) {
            (Some(a), Some(b)) if b >= a => b - a + 1,
            _ => 0,
        },
        None => u32::from(parse(field).is_some()),
    }
}

/// What one node's view of the cluster says is wrong, if anything: it must
/// see `masters` healthy masters serving every slot between them, and one
/// healthy replica of a known master for each of the other nodes.
pub(crate) fn whole(view: &[Node], masters: usize, replicas: usize) -> Result<(), String> {
    if let Some(bad) = view.iter().find(|n| n.unhealthy || !n.connected) {
        return Err(format!("node on port {} is not a healthy member", bad.port));
    }
    let (heads, tails): (Vec<&Node>, Vec<&Node>) = view.iter().partition(|n| n.master);
    if heads.len() != masters || tails.len() != replicas {
        return Err(format!(
            "{} masters and {} replicas, want {masters} and {replicas}",
            heads.len(),
            tails.len()
        ));
    }
    let served: u32 = heads.iter().map(|n| n.slots).sum();
    if served != SLOTS {
        return Err(format!("{served} of {SLOTS} slots served"));
    }
    let orphan = tails.iter().find(|replica| {
        !heads
            .iter()
            .any(|m| Some(&m.id) == replica.master_id.as_ref())
    });
    match orphan {
        Some(replica) => Err(format!("replica on port {} has no master", replica.port)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `CLUSTER NODES` of a fresh 3+3 cluster, as redis-server 7.0 prints it
    /// (the `myself` line first; ids shortened).
    const NODES: &str = "\
a1 127.0.0.1:57001@57101 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:57002@57102 master - 0 1700000000000 2 connected 5461-10922
c3 127.0.0.1:57003@57103 master - 0 1700000000000 3 connected 10923-16383
d4 127.0.0.1:57004@57104 slave c3 0 1700000000000 3 connected
e5 127.0.0.1:57005@57105 slave a1 0 1700000000000 1 connected
f6 127.0.0.1:57006@57106 slave b2 0 1700000000000 2 connected
";

    #[test]
    fn a_fresh_cluster_is_whole() {
        let view = nodes(NODES);
        assert_eq!(view.len(), 6);
        assert_eq!(view[0].port, 57001);
        assert!(view[0].master);
        assert_eq!(view[0].slots, 5461);
        assert_eq!(view[3].master_id.as_deref(), Some("c3"));
        assert_eq!(whole(&view, 3, 3), Ok(()));
    }

    #[test]
    fn a_failed_master_or_missing_slots_are_not_whole() {
        let failed = NODES.replace(
            "b2 127.0.0.1:57002@57102 master",
            "b2 127.0.0.1:57002@57102 master,fail",
        );
        assert!(whole(&nodes(&failed), 3, 3).unwrap_err().contains("57002"));
        let uncovered = NODES.replace("10923-16383", "10923-16000");
        assert!(
            whole(&nodes(&uncovered), 3, 3)
                .unwrap_err()
                .contains("slots")
        );
        let handshake = NODES.lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(whole(&nodes(&handshake), 3, 3).is_err());
    }

    #[test]
    fn slot_fields_count_ranges_singles_and_skip_migrations() {
        assert_eq!(slot_count("0-5460"), 5461);
        assert_eq!(slot_count("42"), 1);
        assert_eq!(slot_count("[42->-b2]"), 0);
        assert_eq!(slot_count("9-3"), 0);
        let line = "a1 h:1@2 master - 0 0 1 connected 0-9 12 [13-<-c3]";
        assert_eq!(nodes(line)[0].slots, 11);
        assert!(nodes("garbage line").is_empty());
    }

    #[test]
    fn info_fields_are_read_by_key() {
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\n";
        assert!(state_ok(info));
        assert!(!state_ok("cluster_state:fail\n"));
        assert_eq!(field(info, "cluster_slots_assigned"), Some("16384"));
        assert!(replica_link_up("role:slave\nmaster_link_status:up\n"));
        assert!(!replica_link_up("role:slave\nmaster_link_status:down\n"));
    }
}
