//! Read replicas: where a read runs, how healthy and how far behind each
//! replica is, and read-your-writes.
//!
//! Reads outside a unit of work (get, get_many, find, count, exists,
//! pages, streams, searches) go to a healthy replica unless the entity says
//! `#[repo(reads = "primary")]` or the repository is pinned
//! ([`PgRepository::on_primary`](crate::PgRepository::on_primary)); every
//! write and everything in a unit of work runs on the primary. A
//! background probe (`probe.rs`) measures each replica's lag in bytes of
//! WAL and marks it down on errors; a read that fails on a replica for a
//! reason another server may not share (a lost connection, a recovery
//! conflict) is run once more on the primary (`read.rs`).

mod config;
mod position;
pub(crate) mod probe;
pub(crate) mod read;
mod scope;

pub(crate) use scope::{TrackGuard, may_have_committed};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use reposmith_core::{ConnectionUrl, ReadPreference};

use crate::pool::ConnectionPool;

pub use config::{ReplicaConfig, ReplicaFallback};
pub use position::{Session, WalPosition};

/// Where a repository's reads go, as the caller asked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Route {
    /// `on_primary()` / `on_replica()`; `None` follows the entity's `reads`.
    pub(crate) pin: Option<ReadPreference>,
    /// The session whose writes the reads must see, and which records them.
    pub(crate) session: Option<Session>,
}

impl Route {
    /// Reads pinned to the primary.
    pub(crate) fn primary() -> Self {
        Route {
            pin: Some(ReadPreference::Primary),
            session: None,
        }
    }

    /// Whether reads through this route go to the primary only.
    pub(crate) fn primary_only(&self, entity_default: ReadPreference) -> bool {
        self.pin.unwrap_or(entity_default) == ReadPreference::Primary
    }
}

/// One replica: its pool and what the probe last saw.
pub(crate) struct Replica {
    /// Host, port and database, no credentials: names it in spans and events.
    pub(crate) name: String,
    pub(crate) url: ConnectionUrl,
    /// Its connect options without pgvector's iterative-scan settings.
    pub(crate) base: sqlx::postgres::PgConnectOptions,
    pub(crate) pool: Arc<ConnectionPool>,
    /// Answering, in recovery, and of the primary's cluster.
    up: AtomicBool,
    /// Bytes of WAL behind the primary at the last probe.
    lag: AtomicU64,
    /// `pg_last_wal_replay_lsn()` at the last probe or wait.
    replayed: AtomicU64,
    /// Reads it answered.
    served: AtomicU64,
}

impl Replica {
    /// A replica that starts down until checked.
    pub(crate) fn new(
        url: ConnectionUrl,
        base: sqlx::postgres::PgConnectOptions,
        pool: Arc<ConnectionPool>,
    ) -> Self {
        Replica {
            name: url.target().to_owned(),
            url,
            base,
            pool,
            up: AtomicBool::new(false),
            // Unknown until measured: not served by default reads before.
            lag: AtomicU64::new(u64::MAX),
            replayed: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Marks the replica down (an error, a failed probe) or up again;
    /// logs the change once.
    pub(crate) fn set_up(&self, up: bool, why: &str) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            match up {
                true => {
                    tracing::info!(target: "reposmith.replica", replica = %self.name, "replica serving: {why}")
                }
                false => {
                    tracing::warn!(target: "reposmith.replica", replica = %self.name, "replica down: {why}")
                }
            }
        }
        if !up {
            // Its connections most likely died with it.
            self.pool.flush_idle();
        }
    }

    pub(crate) fn lag(&self) -> u64 {
        self.lag.load(Ordering::Acquire)
    }

    pub(crate) fn set_lag(&self, bytes: u64) {
        self.lag.store(bytes, Ordering::Release);
    }

    /// The latest replay position seen, by a probe or a wait.
    pub(crate) fn replayed(&self) -> WalPosition {
        WalPosition::from_u64(self.replayed.load(Ordering::Acquire))
    }

    pub(crate) fn answered(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn saw_replayed(&self, position: WalPosition) {
        self.replayed.fetch_max(position.as_u64(), Ordering::AcqRel);
    }
}

/// What the probe last saw of one replica ([`PgBackend::replicas`](crate::PgBackend::replicas)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// Host, port and database, without credentials.
    pub name: String,
    /// Answering, in recovery and of the primary's cluster.
    pub up: bool,
    /// Bytes of WAL behind the primary at the last probe (`u64::MAX` until
    /// first measured).
    pub lag_bytes: u64,
    /// Its replay position at the last probe or read-your-writes wait.
    pub replayed: WalPosition,
    /// Whether default reads may go to it now (up and within `max_lag`).
    pub serving: bool,
    /// Reads it has answered since connect.
    pub reads: u64,
}

/// Where reads ran since connect ([`PgBackend::read_stats`](crate::PgBackend::read_stats)),
/// for metrics and for seeing the router work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadStats {
    /// Pool reads answered by the primary (pinned there, or fallen back).
    pub primary: u64,
    /// Reads answered by a replica.
    pub replicas: u64,
    /// Reads that were meant for a replica and ran on the primary instead.
    pub fallbacks: u64,
    /// Session reads that waited on a replica for their writes to be replayed.
    pub waits: u64,
    /// Their total wait, in microseconds.
    pub waited_us: u64,
}

/// The counters behind [`ReadStats`].
#[derive(Default)]
pub(crate) struct Counters {
    primary: AtomicU64,
    fallbacks: AtomicU64,
    waits: AtomicU64,
    waited_us: AtomicU64,
}

impl Counters {
    pub(crate) fn on_primary(&self) {
        self.primary.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn waited(&self, us: u64) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waited_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// The configured replicas and the router's state.
pub(crate) struct Replicas {
    pub(crate) members: Vec<Replica>,
    pub(crate) config: ReplicaConfig,
    /// Where reads ran.
    pub(crate) counters: Counters,
    /// Round-robin cursor.
    next: AtomicUsize,
    /// Set while reads fall back because no replica may serve them, so the
    /// warning is logged once per outage rather than once per read.
    starved: AtomicBool,
    /// Stops the probe when the backend closes.
    pub(crate) probe: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Where one read attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The replica at this index.
    Replica { index: usize },
    /// No replica may serve it: the primary (or, configured so, fail).
    None,
}

impl Replicas {
    pub(crate) fn new(members: Vec<Replica>, config: ReplicaConfig) -> Self {
        Replicas {
            members,
            config,
            counters: Counters::default(),
            next: AtomicUsize::new(0),
            starved: AtomicBool::new(false),
            probe: std::sync::Mutex::new(None),
        }
    }

    /// Whether `replica` may take a read: up, and within `max_lag` unless
    /// the caller pinned reads to replicas (and so accepts their lag).
    fn eligible(&self, replica: &Replica, pinned: bool) -> bool {
        replica.is_up() && (pinned || replica.lag() <= self.config.max_lag)
    }

    /// The replica for a read that must see `want` (if any): the first one
    /// last seen past `want`, else the next eligible one round-robin (the
    /// read checks and waits on it either way).
    pub(crate) fn choose(&self, want: Option<WalPosition>, pinned: bool) -> Choice {
        let n = self.members.len();
        if n == 0 {
            return Choice::None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let eligible: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.eligible(&self.members[i], pinned))
            .collect();
        let caught_up = |i: &&usize| want.is_none_or(|w| self.members[**i].replayed() >= w);
        match eligible.iter().find(caught_up).or(eligible.first()) {
            Some(&index) => Choice::Replica { index },
            None => Choice::None,
        }
    }

    /// No replica may serve reads: warns once until one serves again.
    pub(crate) fn none_serving(&self) {
        if !self.starved.swap(true, Ordering::AcqRel) {
            tracing::warn!(target: "reposmith.replica", fallback = ?self.config.fallback,
                "no replica can serve reads (down, or lagging more than max_lag)");
        }
    }

    /// A replica served a read: ends an outage [`Replicas::none_serving`] reported.
    pub(crate) fn serving_again(&self) {
        if self.starved.load(Ordering::Relaxed) && self.starved.swap(false, Ordering::AcqRel) {
            tracing::info!(target: "reposmith.replica", "replicas serve reads again");
        }
    }

    pub(crate) fn status(&self) -> Vec<ReplicaStatus> {
        self.members
            .iter()
            .map(|r| ReplicaStatus {
                name: r.name.clone(),
                up: r.is_up(),
                lag_bytes: r.lag(),
                replayed: r.replayed(),
                serving: self.eligible(r, false),
                reads: r.served.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub(crate) fn stats(&self) -> ReadStats {
        let c = &self.counters;
        ReadStats {
            primary: c.primary.load(Ordering::Relaxed),
            replicas: self
                .members
                .iter()
                .map(|r| r.served.load(Ordering::Relaxed))
                .sum(),
            fallbacks: c.fallbacks.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            waited_us: c.waited_us.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn stop_probe(&self) {
        if let Some(task) = self.probe.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        self.stop_probe();
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::PgConfig;

    fn replicas(n: usize, max_lag: u64) -> Replicas {
        let config = PgConfig::new("postgres://u:pw@primary/db");
        let members = (0..n)
            .map(|i| {
                let url = ConnectionUrl::new(format!("postgres://u:pw@replica{i}/db"));
                let options = sqlx::postgres::PgConnectOptions::from_str(url.expose()).unwrap();
                let pool = ConnectionPool::new(options.clone(), None, &config);
                Replica::new(url, options, pool)
            })
            .collect();
        Replicas::new(members, ReplicaConfig::default().max_lag(max_lag))
    }

    fn pick(set: &Replicas, want: Option<u64>, pinned: bool) -> Option<usize> {
        match set.choose(want.map(WalPosition::from_u64), pinned) {
            Choice::Replica { index } => Some(index),
            Choice::None => None,
        }
    }

    #[test]
    fn reads_go_round_robin_to_replicas_up_and_within_max_lag() {
        let set = replicas(3, 100);
        assert_eq!(pick(&set, None, false), None, "down until checked");
        for replica in &set.members {
            replica.set_up(true, "test");
        }
        assert_eq!(pick(&set, None, false), None, "lag unknown until measured");
        for replica in &set.members {
            replica.set_lag(0);
        }
        let picks: Vec<_> = (0..6).map(|_| pick(&set, None, false).unwrap()).collect();
        assert_eq!(picks[..3], picks[3..], "a cycle: {picks:?}");
        let mut cycle = picks[..3].to_vec();
        cycle.sort_unstable();
        assert_eq!(cycle, [0, 1, 2]);
        set.members[1].set_lag(101);
        set.members[2].set_up(false, "test");
        assert!((0..6).all(|_| pick(&set, None, false) == Some(0)));
        assert!(
            (0..6).any(|_| pick(&set, None, true) == Some(1)),
            "pinned accepts lag"
        );
        set.members[0].set_up(false, "test");
        assert_eq!(pick(&set, None, false), None);
    }

    #[test]
    fn a_session_read_prefers_a_replica_seen_past_its_position() {
        let set = replicas(2, u64::MAX);
        for (i, replica) in set.members.iter().enumerate() {
            replica.set_up(true, "test");
            replica.set_lag(0);
            replica.saw_replayed(WalPosition::from_u64(100 * (i as u64 + 1)));
        }
        assert!((0..4).all(|_| pick(&set, Some(150), false) == Some(1)));
        // Nobody is past it: any eligible one, to be waited on.
        assert!(pick(&set, Some(500), false).is_some());
        assert_eq!(set.status()[1].replayed, WalPosition::from_u64(200));
        assert!(!format!("{:?}", set.status()).contains("pw"));
    }
}
