//! The limiter while its Redis (a server of the test's own) is stopped
//! (SIGKILL for 1.5 s), paused (`DEBUG SLEEP` for 1.5 s, longer than the
//! response timeout) and restarted (killed and started again at once),
//! under both failure policies, with a check every few milliseconds
//! throughout. It proves:
//!
//! * every call returns within the response timeout plus a scheduling
//!   margin: none hangs on a dead or silent server;
//! * failing closed, every decision the store did not make is a denial
//!   with [`Denial::Unavailable`] from [`Source::Nobody`];
//! * failing open, the outage's admissions are [`Source::Local`] and never
//!   exceed this process's share (limit ÷ processes, burst ÷ processes)
//!   over the span they were made in;
//! * decisions come from the server again within two breaker cooldowns
//!   (plus one response timeout) of the server answering: the first probe
//!   after a stop can still fail (the driver's reconnect, begun while the
//!   server was down, fails it), so one cooldown is measured often
//!   (~210 ms) but not always (~510 ms with a 300 ms cooldown);
//! * state written before a kill survives it (AOF, fsynced on every write):
//!   a subject at its limit stays limited, a reservation can still be
//!   reconciled; the restarted server's empty script cache is refilled
//!   through `NOSCRIPT` → `EVAL`;
//! * renew, reconcile and release of a server lease during the outage
//!   return a typed error quickly, while leases the fallback granted
//!   ([`Lease::is_local`]) renew, reconcile and release locally;
//! * afterwards every key under the limiter's prefix has a TTL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reposmith::limit::{Decision, Denial, Lease, Limit, Limiter, LimiterOptions, Policy, Source};
use reposmith::{RedisBackend, RedisConfig};
use reposmith_tests::redis_server::RedisServer;
use reposmith_tests::unique_name;

use super::basics::assert_every_key_expires;

/// The limiter's response timeout.
const RESPONSE: Duration = Duration::from_millis(100);
/// The breaker opens after 3 failures and probes after this.
const COOLDOWN: Duration = Duration::from_millis(300);
/// Scheduling slack on a shared 2-core machine running other tests.
const MARGIN: Duration = Duration::from_millis(250);
/// How long the server is stopped or paused.
const OUTAGE: Duration = Duration::from_millis(1500);
/// The fail-open limiter's expected processes.
const PROCESSES: u32 = 4;
/// The load's rate limit: 40/s with a burst of 20, so each of 4 processes
/// may admit 10/s with a burst of 5 on its own.
const RATE: u64 = 40;
const BURST: u64 = 20;
/// Pause between the load's checks.
const PACE: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Closed,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    Stopped,
    Paused,
    Restarted,
}

/// One check of the load: when it started, how long it took, its answer.
#[derive(Debug)]
struct Call {
    started: Instant,
    took: Duration,
    decision: Decision,
}

/// The three limiters of a scenario, under one prefix.
struct Limiters {
    prefix: String,
    /// A fast rate, checked continuously through the outage.
    load: Limiter,
    /// 5 per hour, no deny cache: a subject at its limit stays there.
    capped: Limiter,
    /// Tokens and permits: reservations and leases.
    leases: Limiter,
}

impl Limiters {
    fn new(redis: &RedisBackend, failure: Failure) -> Limiters {
        let prefix = unique_name("lim");
        let options = || {
            let base = match failure {
                Failure::Closed => LimiterOptions::fail_closed(),
                Failure::Open => LimiterOptions::fail_open(PROCESSES),
            };
            base.prefix(&prefix)
                .response_timeout(RESPONSE)
                .breaker(3, COOLDOWN)
        };
        let second = Duration::from_secs(1);
        let load = Policy::new("load").with(Limit::requests("rps", RATE, second).burst(BURST));
        let capped = Policy::new("capped").with(Limit::requests("rph", 5, 3600 * second));
        let leases = Policy::new("leases")
            .with(Limit::tokens("tpm", 100_000, 60 * second))
            .with(Limit::concurrency("inflight", 8));
        Limiters {
            load: redis.limiter(load, options()).unwrap(),
            capped: redis.limiter(capped, options().deny_cache(0)).unwrap(),
            leases: redis.limiter(leases, options()).unwrap(),
            prefix,
        }
    }
}

async fn connect(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(&RedisConfig::new(server.url()))
        .await
        .expect("connect to the test's own Redis")
}

/// Checks `subject` every `PACE` until `stop` is set, recording each call.
fn spawn_load(limiter: Limiter, calls: Arc<Mutex<Vec<Call>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Bounded: the test stops it long before (a few seconds of calls).
        for _ in 0..10_000 {
            let started = Instant::now();
            let decision = limiter.check("busy", 1).await.expect("a valid check");
            let call = Call {
                started,
                took: started.elapsed(),
                decision,
            };
            calls.lock().unwrap().push(call);
            tokio::time::sleep(PACE).await;
        }
    })
}

/// Asserts `call` finished within the response timeout plus the margin.
fn assert_bounded(what: &str, took: Duration) {
    assert!(
        took <= RESPONSE + MARGIN,
        "{what} took {took:?}: more than {RESPONSE:?} + {MARGIN:?}"
    );
}

/// Times `call` and asserts it was bounded.
async fn timed<T>(what: &str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    assert_bounded(what, started.elapsed());
    out
}

/// Before the outage: `capped`'s subject at its limit, and a reservation
/// (with a permit) granted by the server.
async fn prepare(l: &Limiters) -> Lease {
    for n in 0..5 {
        let d = l.capped.check("full", 1).await.unwrap();
        assert!(d.allowed && d.source == Source::Server, "call {n}: {d:?}");
    }
    let denied = l.capped.check("full", 1).await.unwrap();
    assert_eq!(denied.denied_by(), Some("rph"));
    let held = l.leases.reserve("holder", 1_000).await.unwrap();
    assert_eq!(held.source, Source::Server);
    let lease = held.lease.expect("a reservation holds a lease");
    assert!(!lease.is_local() && lease.holds_permit());
    lease
}

/// During the outage: the server's lease cannot be renewed, reconciled or
/// released (a typed error, quickly); a fail-open limiter grants leases of
/// its own that renew and release locally. Returns a local reservation to
/// reconcile after the outage, if one was granted.
async fn during(l: &Limiters, held: &Lease, failure: Failure) -> Option<Lease> {
    let mut copy = held.clone();
    let renew = timed("renew", l.leases.renew(&mut copy)).await;
    let reconcile = timed("reconcile", l.leases.reconcile(held, 800)).await;
    let release = timed("release", l.leases.release(held)).await;
    for (what, error) in [
        ("renew", renew.err()),
        ("reconcile", reconcile.err()),
        ("release", release.err()),
    ] {
        let error = error.unwrap_or_else(|| panic!("{what} of a server lease succeeded"));
        assert!(error.is_unreachable(), "{what}: {error:?}");
    }
    let reserved = timed("reserve", l.leases.reserve("local-holder", 500)).await;
    let acquired = timed("acquire", l.leases.acquire("local-holder")).await;
    let (reserved, acquired) = (reserved.unwrap(), acquired.unwrap());
    if failure == Failure::Closed {
        for d in [reserved, acquired] {
            assert_unavailable(&d);
        }
        return None;
    }
    let mut local = reserved.lease.clone().expect("a local reservation");
    assert_eq!(reserved.source, Source::Local);
    assert!(local.is_local() && local.holds_permit(), "{local:?}");
    assert!(l.leases.renew(&mut local).await.unwrap(), "renewed locally");
    let permit = acquired.lease.expect("a local permit");
    assert!(permit.is_local());
    assert!(l.leases.release(&permit).await.unwrap(), "released locally");
    Some(local)
}

fn assert_unavailable(d: &Decision) {
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.source, Source::Nobody, "{d:?}");
    assert!(
        matches!(&d.denied, Some(Denial::Unavailable { reason }) if !reason.is_empty()),
        "{d:?}"
    );
    assert!(d.retry_after_header().is_some());
}

/// Takes the server away as `outage` says, doing `during`'s work while it
/// is away; returns the server and when it answered again.
async fn take_away(
    server: RedisServer,
    outage: Outage,
    l: &Limiters,
    held: &Lease,
    failure: Failure,
) -> (RedisServer, Instant, Option<Lease>) {
    let started = Instant::now();
    match outage {
        Outage::Stopped => {
            let mut server = server;
            server.stop();
            let local = during(l, held, failure).await;
            tokio::time::sleep(OUTAGE.saturating_sub(started.elapsed())).await;
            let server = off_thread(move || {
                server.restart();
                server
            })
            .await;
            (server, Instant::now(), local)
        }
        Outage::Paused => {
            let pause = server.pause(OUTAGE);
            // Let DEBUG SLEEP reach the server before asking it anything.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let local = during(l, held, failure).await;
            let server = off_thread(move || {
                pause.join().expect("DEBUG SLEEP");
                server
            })
            .await;
            (server, Instant::now(), local)
        }
        Outage::Restarted => {
            let server = off_thread(move || {
                let mut server = server;
                server.restart();
                server
            })
            .await;
            (server, Instant::now(), None)
        }
    }
}

/// Runs `f` (which blocks: a restart waits for the server's PING) on a
/// blocking thread.
async fn off_thread(f: impl FnOnce() -> RedisServer + Send + 'static) -> RedisServer {
    tokio::task::spawn_blocking(f)
        .await
        .expect("the blocking task")
}

/// Waits (bounded) until the load has a server decision started after
/// `back`; returns when it finished.
async fn recovered(calls: &Mutex<Vec<Call>>, back: Instant) -> Instant {
    let deadline = back + Duration::from_secs(5);
    loop {
        let first = calls
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.started >= back && c.decision.source == Source::Server)
            .map(|c| c.started + c.took);
        if let Some(at) = first {
            return at;
        }
        assert!(Instant::now() < deadline, "no server decision 5 s after");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The load's calls, judged by the failure policy; returns (store
/// decisions, fallback decisions, fallback admissions).
fn judge_load(calls: &[Call], failure: Failure) -> (usize, usize, usize) {
    for call in calls {
        assert_bounded("check", call.took);
    }
    let fallback: Vec<&Call> = calls
        .iter()
        .filter(|c| !matches!(c.decision.source, Source::Server | Source::DenyCache))
        .collect();
    let admitted: Vec<&Call> = fallback
        .iter()
        .copied()
        .filter(|c| c.decision.allowed)
        .collect();
    match failure {
        Failure::Closed => {
            fallback
                .iter()
                .for_each(|c| assert_unavailable(&c.decision));
            assert!(admitted.is_empty());
        }
        Failure::Open => {
            for c in &fallback {
                assert_eq!(c.decision.source, Source::Local, "{:?}", c.decision);
            }
            assert_local_bound(&admitted);
        }
    }
    let server = calls.len() - fallback.len();
    (server, fallback.len(), admitted.len())
}

/// Local admissions over the span they were made in stay within this
/// process's share: burst ÷ processes + span × rate ÷ processes.
fn assert_local_bound(admitted: &[&Call]) {
    let (Some(first), Some(last)) = (admitted.first(), admitted.last()) else {
        panic!("failing open admitted nothing locally");
    };
    let span = (last.started + last.took) - first.started;
    let share = |n: u64| (n / u64::from(PROCESSES)) as f64;
    let bound = share(BURST) + span.as_secs_f64() * share(RATE);
    println!(
        "local admissions: {} over {span:?}; bound {bound:.1} ({} + {span:?} × {}/s)",
        admitted.len(),
        share(BURST),
        share(RATE)
    );
    assert!(
        admitted.len() as f64 <= bound.floor(),
        "{} local admissions over {span:?}: more than {bound:.1}",
        admitted.len()
    );
}

/// `INFO errorstats` and `INFO commandstats` of the (restarted) server: it
/// answered `NOSCRIPT` and then ran the script by `EVAL`.
async fn assert_scripts_reloaded(redis: &RedisBackend) {
    let mut conn = redis.connection();
    let info: String = reposmith::redis::cmd("INFO")
        .arg("everything")
        .query_async(&mut conn)
        .await
        .unwrap();
    let has = |prefix: &str| info.lines().any(|l| l.starts_with(prefix));
    assert!(has("errorstat_NOSCRIPT:count="), "no NOSCRIPT answered");
    assert!(has("cmdstat_eval:calls="), "no EVAL after NOSCRIPT");
}

async fn scenario(failure: Failure, outage: Outage) {
    let test_started = Instant::now();
    let server = RedisServer::start();
    let redis = connect(&server).await;
    let l = Limiters::new(&redis, failure);
    let held = prepare(&l).await;

    let calls = Arc::new(Mutex::new(Vec::new()));
    let load = spawn_load(l.load.clone(), Arc::clone(&calls));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let away = Instant::now();
    let (server, back, local) = take_away(server, outage, &l, &held, failure).await;
    let served = recovered(&calls, back).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    load.abort();
    let _ = load.await;
    let calls = std::mem::take(&mut *calls.lock().unwrap());

    let (by_server, by_fallback, admitted) = judge_load(&calls, failure);
    let recovery = served - back;
    println!(
        "{failure:?}/{outage:?}: away {:?}, server decisions again {recovery:?} after it \
         answered; {} checks: {by_server} by the store or deny cache, {by_fallback} by the \
         fallback ({admitted} admitted); max call {:?}; stats {:?}",
        back - away,
        calls.len(),
        calls.iter().map(|c| c.took).max().unwrap_or_default(),
        l.load.stats(),
    );
    let late: Vec<String> = calls
        .iter()
        .filter(|c| c.started >= back)
        .filter_map(|c| match &c.decision.denied {
            Some(Denial::Unavailable { reason }) => Some(reason.clone()),
            _ => None,
        })
        .filter(|reason| !reason.contains("circuit breaker is open"))
        .collect();
    // Seen failing closed only: failing open, a failed probe is a local decision.
    println!("failed probes after the server answered: {late:?}");
    assert!(by_fallback > 0, "the outage was never noticed");
    assert!(
        recovery <= 2 * COOLDOWN + RESPONSE + MARGIN,
        "server decisions only {recovery:?} after the server answered"
    );
    after(&l, held, local, outage).await;
    if outage != Outage::Paused {
        assert_scripts_reloaded(&redis).await;
    }
    let keys = assert_every_key_expires(&redis, &l.prefix).await;
    assert!(keys > 0, "no keys under {}", l.prefix);
    println!(
        "{keys} keys, each with a TTL; {:?} in all",
        test_started.elapsed()
    );
    drop(server);
}

/// After the outage: the capped subject is still limited (its state
/// survived), the server's reservation reconciles (unless a timed-out
/// reconcile ran when a paused server woke), a local one reconciles
/// locally.
async fn after(l: &Limiters, held: Lease, local: Option<Lease>, o: Outage) {
    let capped = l.capped.check("full", 1).await.unwrap();
    assert_eq!(capped.source, Source::Server, "{capped:?}");
    assert_eq!(capped.denied_by(), Some("rph"), "state lost: {capped:?}");
    let settled = l.leases.reconcile(&held, 800).await.unwrap();
    match o {
        // The reconcile that timed out was written to the socket before the
        // pause ended: the server runs it on waking, so the caller's timeout
        // does not mean "not applied".
        Outage::Paused => println!("reconcile after the pause: {settled:?}"),
        _ => assert!(
            settled.settled && settled.charged == -200,
            "the reservation survived the kill: {settled:?}"
        ),
    }
    if let Some(local) = local {
        let settled = l.leases.reconcile(&local, 200).await.unwrap();
        assert!(settled.settled && settled.charged == -300, "{settled:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_while_redis_is_stopped() {
    scenario(Failure::Closed, Outage::Stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_while_redis_is_paused() {
    scenario(Failure::Closed, Outage::Paused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_while_redis_restarts() {
    scenario(Failure::Closed, Outage::Restarted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_while_redis_is_stopped() {
    scenario(Failure::Open, Outage::Stopped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_while_redis_is_paused() {
    scenario(Failure::Open, Outage::Paused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_while_redis_restarts() {
    scenario(Failure::Open, Outage::Restarted).await;
}
