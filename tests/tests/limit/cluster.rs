//! The limiter on the Redis Cluster of `cargo xtask services up --cluster`
//! (`REDIS_CLUSTER_URLS`; like the queue's cluster tests these fail, saying
//! how to start it, when it is not running). It proves:
//!
//! * one subject's four keys share a hash slot, so every script runs on one
//!   master: many subjects spread over all three masters check, reserve,
//!   reconcile, acquire, renew and release without `CROSSSLOT`, and every
//!   key they leave has a TTL;
//! * a master lost mid-run and its replica promoted costs at most one
//!   burst: admissions of a saturated subject, counted on the server's
//!   clock, exceed what GCRA allows over the run (`burst + span /
//!   interval`) by at most one burst, and an idle subject that takes its
//!   whole burst just before the loss gets at most that burst again. The
//!   measured figures are printed.
//!
//! Why one burst is the bound (for a rate limit, one failover): replication
//! is asynchronous, so the promoted replica may hold an older TAT than the
//! lost master acknowledged. Every admission left the TAT at most one
//! tolerance (`burst × interval`) ahead of the server's clock, so the lost
//! part of the TAT is at most one tolerance: at most `burst` units are
//! admitted a second time. Two failovers in one tolerance could lose two.
//!
//! The master is lost by SIGSTOP, not SIGKILL: to the cluster a frozen
//! master is as dead as a killed one (it answers nothing until its replica
//! is promoted, and what it had not replicated is lost), but once resumed
//! it rejoins as a replica of the promoted one, so the test leaves the
//! cluster whole, with the same processes, for the queue's and the cache's
//! failover tests (which kill). It loses whichever shard's master has a
//! replica in sync when it starts. A lock file keeps this file's tests from
//! overlapping; the nextest group `cluster-failover` keeps it from
//! overlapping the other tests that lose a master.

use std::fs::{File, OpenOptions, TryLockError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reposmith::limit::{Decision, Limit, Limiter, LimiterOptions, Policy, Source, Window};
use reposmith::redis::cluster_routing::Slot;
use reposmith::{RedisBackend, RedisConfig};
use reposmith_core::limit::SubjectKeys;
use reposmith_tests::redis_cluster::{self, Node};
use reposmith_tests::unique_name;

/// The saturated subject's limit: 10/s (one every 100 ms) with a burst of
/// 100, so its tolerance (10 s) outlasts the failover and a lost TAT would
/// show as extra admissions.
const STEADY_RATE: u64 = 10;
const STEADY_BURST: u64 = 100;
/// The idle subject's limit: 50 an hour (its burst), nothing refills
/// during the run.
const IDLE_BURST: u64 = 50;
/// Tasks checking the saturated subject.
const TASKS: usize = 3;

async fn cluster_backend() -> RedisBackend {
    let config = RedisConfig::cluster(redis_cluster::cluster_urls());
    RedisBackend::connect(&config)
        .await
        .expect("connect to the cluster of `cargo xtask services up --cluster`")
}

fn options(prefix: &str) -> LimiterOptions {
    LimiterOptions::fail_closed()
        .prefix(prefix)
        .response_timeout(Duration::from_millis(300))
        .breaker(3, Duration::from_millis(200))
}

/// The slot number of `key`.
fn slot_of(key: &str) -> u16 {
    let slot = Slot::for_key(key);
    (0..16_384)
        .find(|n| Slot::new(*n) == Some(slot))
        .expect("a slot below 16384")
}

/// Holds a lock file shared (tests that only use the cluster) or exclusive
/// (the test that kills a master); released when dropped.
async fn cluster_lock(exclusive: bool) -> File {
    let path = std::env::temp_dir().join("reposmith-limit-cluster.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open the cluster lock file");
    let started = Instant::now();
    loop {
        let tried = match exclusive {
            true => file.try_lock(),
            false => file.try_lock_shared(),
        };
        match tried {
            Ok(()) => return file,
            Err(TryLockError::WouldBlock) if started.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("lock {}: {e}", path.display()),
        }
    }
}

/// `CLUSTER NODES` from the first seed that answers.
async fn cluster_nodes() -> String {
    for url in redis_cluster::cluster_urls() {
        let seed = url.trim_start_matches("redis://");
        let cmd = reposmith::redis::cmd("CLUSTER").arg("NODES").clone();
        if let Ok(nodes) = redis_cluster::ask::<String>(seed, &cmd).await {
            return nodes;
        }
    }
    panic!("no cluster node answered CLUSTER NODES");
}

/// The addresses of the nodes serving slots, and whether each is healthy
/// (a master not flagged `fail` or `fail?`).
fn slot_owners(nodes: &str) -> Vec<(String, bool)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 8).then(|| {
                let flags = fields[2];
                let healthy = flags.split(',').any(|f| f == "master") && !flags.contains("fail");
                let address = fields[1].split('@').next().unwrap_or_default().to_owned();
                (address, healthy)
            })
        })
        .collect()
}

/// Waits (bounded) until three healthy masters serve every slot and no
/// failover is under way; returns their addresses.
async fn await_whole_cluster(within: Duration) -> Vec<String> {
    let started = Instant::now();
    loop {
        let owners = slot_owners(&cluster_nodes().await);
        let info = cluster_info().await;
        let ok = info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384");
        if ok && owners.len() == 3 && owners.iter().all(|(_, healthy)| *healthy) {
            return owners.into_iter().map(|(a, _)| a).collect();
        }
        assert!(
            started.elapsed() < within,
            "the cluster is not whole after {within:?}: {owners:?}\n{info}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cluster_info() -> String {
    for url in redis_cluster::cluster_urls() {
        let seed = url.trim_start_matches("redis://");
        let cmd = reposmith::redis::cmd("CLUSTER").arg("INFO").clone();
        if let Ok(info) = redis_cluster::ask::<String>(seed, &cmd).await {
            return info;
        }
    }
    panic!("no cluster node answered CLUSTER INFO");
}

/// Scans `master` for keys under `prefix`; asserts each has a TTL (`PTTL`
/// -1 means none). Returns how many there were.
async fn keys_with_ttl(master: &str, prefix: &str) -> usize {
    let pattern = format!("{{{prefix}:*");
    let (mut cursor, mut seen) = (0u64, 0);
    for _ in 0..10_000 {
        let scan = reposmith::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .clone();
        let (next, keys): (u64, Vec<String>) = redis_cluster::ask(master, &scan).await.unwrap();
        for key in &keys {
            let pttl = reposmith::redis::cmd("PTTL").arg(key).clone();
            let ttl: i64 = redis_cluster::ask(master, &pttl).await.unwrap();
            assert_ne!(ttl, -1, "{key} on {master} has no TTL");
        }
        seen += keys.len();
        if next == 0 {
            return seen;
        }
        cursor = next;
    }
    panic!("SCAN {pattern} on {master} did not end");
}

fn llm_policy() -> Policy {
    let minute = Duration::from_secs(60);
    Policy::new("llm")
        .with(Limit::requests("rpm", 600, minute))
        .with(Limit::tokens("tpm", 90_000, minute))
        .with(Limit::concurrency("inflight", 4))
        .with(Limit::quota("daily", 1_000_000, Window::Day))
}

fn admitted(d: &Decision) -> bool {
    d.allowed && d.source == Source::Server
}

/// Every operation on one subject, each admitted by the server.
async fn every_operation(limiter: &Limiter, subject: &str) {
    let checked = limiter.check(subject, 100).await.unwrap();
    assert!(admitted(&checked), "{subject:?}: {checked:?}");
    let permit = checked.lease.expect("the check holds a permit");
    assert!(limiter.release(&permit).await.unwrap());
    let reserved = limiter.reserve(subject, 1_000).await.unwrap();
    assert!(admitted(&reserved), "{subject:?}: {reserved:?}");
    let settled = limiter
        .reconcile(&reserved.lease.unwrap(), 600)
        .await
        .unwrap();
    assert!(settled.settled && settled.charged == -400, "{settled:?}");
    let acquired = limiter.acquire(subject).await.unwrap();
    assert!(admitted(&acquired), "{subject:?}: {acquired:?}");
    let mut lease = acquired.lease.unwrap();
    assert!(limiter.renew(&mut lease).await.unwrap());
    assert!(limiter.release(&lease).await.unwrap());
    // The daily quota saw 100 + 600 (the refund of 400 included) + 1.
    let after = limiter.check(subject, 1).await.unwrap();
    assert_eq!(after.limits[3].remaining, 1_000_000 - 701, "{after:?}");
    limiter.release(&after.lease.unwrap()).await.unwrap();
}

#[tokio::test]
async fn each_subjects_keys_share_a_slot_and_subjects_spread_over_every_master() {
    let _shared = cluster_lock(false).await;
    let masters = await_whole_cluster(Duration::from_secs(20)).await;
    let redis = cluster_backend().await;
    let prefix = unique_name("lim");
    let limiter = redis.limiter(llm_policy(), options(&prefix)).unwrap();
    let hostile = ["a}{b", "{x}", "*", "user:1\r\nFLUSHALL", "ü"].map(str::to_owned);
    let subjects: Vec<String> = (0..48)
        .map(|n| format!("tenant-{n}"))
        .chain(hostile)
        .collect();
    let mut shards = [0; 3];
    for subject in &subjects {
        let keys = SubjectKeys::new(&prefix, "llm", subject);
        let slot = slot_of(&keys.state);
        assert!(keys.all().iter().all(|k| slot_of(k) == slot), "{keys:?}");
        shards[usize::from(slot) * 3 / 16_384] += 1;
        every_operation(&limiter, subject).await;
    }
    let mut found = 0;
    for master in &masters {
        let keys = keys_with_ttl(master, &prefix).await;
        assert!(keys > 0, "no subject's keys on {master}");
        found += keys;
    }
    println!(
        "{} subjects over the shards {shards:?}; {found} keys, each with a TTL",
        subjects.len()
    );
    assert!(found >= subjects.len(), "each subject keeps its state hash");
}

/// Two subjects under `prefix` (of the steady and the idle policy) whose
/// keys live on one master with a replica in sync, and that master.
async fn subjects_on_a_replicated_master(
    prefix: &str,
) -> ((String, String), (String, String), Node) {
    for n in 0..100 {
        let steady = format!("steady-{n}");
        let steady_key = SubjectKeys::new(prefix, "steady", &steady).state;
        let master = redis_cluster::master_of(&steady_key).await;
        if !redis_cluster::has_synced_replica(&master).await {
            continue;
        }
        for m in 0..100 {
            let idle = format!("idle-{m}");
            let idle_key = SubjectKeys::new(prefix, "idle", &idle).state;
            if redis_cluster::master_of(&idle_key).await == master {
                return ((steady, steady_key), (idle, idle_key), master);
            }
        }
    }
    panic!("no master with a replica in sync (run `cargo xtask services up --cluster`)");
}

/// One of the saturating load's checks: when it started, whether the
/// server admitted it, and the server's clock.
#[derive(Debug, Clone, Copy)]
struct Check {
    started: Instant,
    admitted: bool,
    at_us: Option<i64>,
}

/// Checks `subject` until aborted, waiting out each denial (at most 20 ms).
fn spawn_load(
    limiter: Limiter,
    subject: String,
    log: Arc<Mutex<Vec<Check>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Bounded: the test aborts it after about ten seconds.
        for _ in 0..100_000 {
            let started = Instant::now();
            let d = limiter.check(&subject, 1).await.expect("a valid check");
            assert!(d.source == Source::Server || !d.allowed, "{d:?}");
            let check = Check {
                started,
                admitted: d.allowed,
                at_us: d.decided_at_us,
            };
            log.lock().unwrap().push(check);
            if !d.allowed {
                let wait = d
                    .retry_after
                    .clamp(Duration::from_millis(1), Duration::from_millis(20));
                tokio::time::sleep(wait).await;
            }
        }
    })
}

/// Admissions over the run minus what GCRA allows between the first and
/// the last (burst + span / interval): at most 0 without state loss.
fn excess(checks: &[Check]) -> (i64, usize, Duration) {
    let times: Vec<i64> = checks
        .iter()
        .filter(|c| c.admitted)
        .filter_map(|c| c.at_us)
        .collect();
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        return (0, 0, Duration::ZERO);
    };
    let span = Duration::from_micros((last - first) as u64);
    let interval = 1.0 / STEADY_RATE as f64;
    let allowed = STEADY_BURST as f64 + span.as_secs_f64() / interval;
    (
        times.len() as i64 - allowed.floor() as i64,
        times.len(),
        span,
    )
}

/// Takes the idle subject's whole burst: every call admitted.
async fn take_burst(limiter: &Limiter, subject: &str) -> u64 {
    let mut taken = 0;
    for _ in 0..IDLE_BURST * 2 {
        if limiter.check(subject, 1).await.unwrap().allowed {
            taken += 1;
        }
    }
    taken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_lost_mid_run_costs_at_most_one_burst() {
    let started = Instant::now();
    let _exclusive = cluster_lock(true).await;
    await_whole_cluster(Duration::from_secs(20)).await;
    let prefix = unique_name("lim");
    let ((steady, steady_key), (idle, _), master) = subjects_on_a_replicated_master(&prefix).await;
    redis_cluster::await_synced_replica(&master, Duration::from_secs(20)).await;

    let redis = cluster_backend().await;
    let second = Duration::from_secs(1);
    let steady_policy = Policy::new("steady")
        .with(Limit::requests("rate", STEADY_RATE, second).burst(STEADY_BURST));
    let idle_policy = Policy::new("idle").with(Limit::requests("rph", IDLE_BURST, 3600 * second));
    let steady_limiter = redis.limiter(steady_policy, options(&prefix)).unwrap();
    let idle_limiter = redis.limiter(idle_policy, options(&prefix)).unwrap();

    let log = Arc::new(Mutex::new(Vec::new()));
    let loads: Vec<_> = (0..TASKS)
        .map(|_| spawn_load(steady_limiter.clone(), steady.clone(), Arc::clone(&log)))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The idle subject takes its burst, and the master dies right after.
    assert_eq!(take_burst(&idle_limiter, &idle).await, IDLE_BURST);
    let killed_at = Instant::now();
    redis_cluster::freeze(&master);
    let promoted =
        redis_cluster::await_failover(&steady_key, &master, Duration::from_secs(20)).await;
    let failover = killed_at.elapsed();
    // Resumed, the old master rejoins as the promoted one's replica.
    redis_cluster::thaw(&master);
    let back = await_admission_after(&log, killed_at).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for load in &loads {
        load.abort();
    }
    for load in loads {
        let _ = load.await;
    }
    let again = take_burst(&idle_limiter, &idle).await;

    let checks = std::mem::take(&mut *log.lock().unwrap());
    let before: Vec<Check> = checks
        .iter()
        .copied()
        .filter(|c| c.started < killed_at)
        .collect();
    let (before_excess, before_n, before_span) = excess(&before);
    let (run_excess, run_n, run_span) = excess(&checks);
    println!(
        "master {} (pid {}) frozen; {} promoted after {failover:?}; admissions again {back:?} \
         after the loss. Saturated subject ({STEADY_RATE}/s, burst {STEADY_BURST}): before the \
         kill {before_n} admitted over {before_span:?}, excess {before_excess}; whole run \
         {run_n} admitted over {run_span:?} of {} checks, extra admitted after failover: \
         {run_excess} of burst {STEADY_BURST}. Idle subject: extra admitted after failover: \
         {again} of burst {IDLE_BURST}. {:?} in all",
        master.address,
        master.pid,
        promoted.address,
        checks.len(),
        started.elapsed()
    );
    assert!(
        before_excess <= 0,
        "GCRA exceeded before any failure: {before_excess}"
    );
    assert!(
        run_excess <= STEADY_BURST as i64,
        "more than one burst extra: {run_excess}"
    );
    assert!(again <= IDLE_BURST);
    finish(&prefix, &master, &promoted).await;
    redis_cluster::await_synced_replica(&promoted, Duration::from_secs(30)).await;
}

/// Waits (bounded) for the first server admission of a check started after
/// `since`; returns how long after `since` it was.
async fn await_admission_after(log: &Mutex<Vec<Check>>, since: Instant) -> Duration {
    loop {
        let first = log
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.started > since && c.admitted)
            .map(|c| c.started - since);
        if let Some(after) = first {
            return after;
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "no admission after the failover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The cluster is whole again (every slot served by a healthy master), and
/// every key the run left, on every master, has a TTL.
async fn finish(prefix: &str, killed: &Node, promoted: &Node) {
    let masters = await_whole_cluster(Duration::from_secs(20)).await;
    assert!(masters.contains(&promoted.address) && !masters.contains(&killed.address));
    let mut keys = 0;
    for master in &masters {
        keys += keys_with_ttl(master, prefix).await;
    }
    assert!(keys > 0, "no keys under {prefix}");
    println!(
        "cluster whole: masters {masters:?}, {keys} keys each with a TTL; {} rejoins as a \
         replica",
        killed.address
    );
}
