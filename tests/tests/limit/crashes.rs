//! Crashes between reserve and reconcile: 10,000 randomized runs of the
//! four-limit LLM check (calls and tokens per second, permits in flight, a
//! token quota per 2 s window; periods compressed from minutes and days so
//! every limit binds within the run) from 16 tasks over 3 subjects. Each
//! run reserves a random estimate and then either reconciles a random
//! actual usage up to it or "crashes": drops its lease unreconciled. One
//! more holder is a real child process killed with `SIGKILL` between its
//! reserve and its reconcile.
//!
//! Accounted on the server's clock, with each run's charge its actual usage
//! when reconciled in time and its estimate otherwise:
//!
//! * no over-admission: calls within `burst + span × rate` over every span,
//!   tokens within it over every span from the first admission, the quota
//!   within its limit in every window, and never more permits held at
//!   once than allowed (counting each permit while it was surely held);
//! * leaked permits are freed exactly at their lease's end: the number of
//!   permits the server says are held at each decision lies between those
//!   surely and possibly held, a leaked one counting only until its expiry;
//! * after the lease TTL no permit or reservation is left, a leaked
//!   reservation can no longer be reconciled, and every key had a TTL.
//!
//! `REPOSMITH_HEAVY=1` runs 100,000.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reposmith::RedisBackend;
use reposmith::limit::{Decision, Lease, Limit, Limiter, LimiterOptions, Policy, Source, Window};
use reposmith_core::limit::gcra::window_of;
use reposmith_core::limit::{Kind, SubjectKeys};
use reposmith_tests::unique_name;

use super::basics::{assert_every_key_expires, backend};
use super::exactness::{Rng, heavy, lines_of, seed, server_time, spawn_child, wait_for};

const PREFIX: &str = "REPOSMITH_LIMIT_CRASH_PREFIX";
const SUBJECTS: [&str; 3] = ["s0", "s1", "s2"];
const TASKS: u64 = 16;
const TTL: Duration = Duration::from_millis(300);
const PERMITS: usize = 4;
const QUOTA_WINDOW: Duration = Duration::from_secs(2);
/// The killed child's estimate.
const CHILD_ESTIMATE: u64 = 1_000;

fn policy() -> Policy {
    let second = Duration::from_secs(1);
    Policy::new("llm")
        .with(Limit::requests("calls", 100, second).burst(10))
        .with(Limit::tokens("tokens", 40_000, second).burst(8_000))
        .with(Limit::concurrency("inflight", PERMITS as u64))
        .with(Limit::quota("quota", 60_000, Window::Every(QUOTA_WINDOW)))
}

fn limiter(redis: &RedisBackend, prefix: &str) -> Limiter {
    let options = LimiterOptions::fail_closed()
        .prefix(prefix)
        .lease_ttl(TTL)
        .deny_cache(0)
        .response_timeout(Duration::from_secs(5));
    redis.limiter(policy(), options).unwrap()
}

/// How an admitted run ended.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Never reconciled: the lease was dropped (or its process killed).
    Crashed,
    /// Reconciled at `actual`, the server's clock read just before (`before`)
    /// and after (`after`) the call; `settled` false when it came too late.
    Reconciled {
        actual: u64,
        settled: bool,
        before: i64,
        after: i64,
    },
}

/// One decision of one run.
#[derive(Debug, Clone)]
struct Run {
    subject: usize,
    estimate: u64,
    at: i64,
    allowed: bool,
    /// The limit that refused it, if one did.
    refused_by: Option<String>,
    /// Permits the server counted as held by others, when the inflight
    /// limit admitted (none when it refused: all were held).
    held: Option<usize>,
    expires: i64,
    end: End,
}

impl Run {
    /// What it finally charged to cost limits.
    fn charge(&self) -> u64 {
        match self.end {
            End::Reconciled {
                actual,
                settled: true,
                ..
            } => actual,
            _ => self.estimate,
        }
    }

    /// Until when its permit was surely held, and until when possibly.
    fn held_until(&self) -> (i64, i64) {
        match self.end {
            End::Crashed => (self.expires, self.expires),
            End::Reconciled { before, after, .. } => {
                (before.min(self.expires), after.min(self.expires))
            }
        }
    }
}

/// The child: reserves on `s0` until admitted, says so, then waits for a
/// reconcile that never comes: the parent kills it.
#[tokio::test]
#[ignore = "run by the crash test as a child process"]
async fn reserve_then_hang() {
    let Ok(prefix) = std::env::var(PREFIX) else {
        return;
    };
    let limiter = limiter(&backend().await, &prefix);
    for _ in 0..10_000 {
        let d = limiter.reserve(SUBJECTS[0], CHILD_ESTIMATE).await.unwrap();
        if let Some(lease) = &d.lease {
            let held = held(&d).unwrap();
            println!("HELD {} {} {held}", d.decided_at_us.unwrap(), micros(lease));
            tokio::time::sleep(Duration::from_secs(30)).await;
            limiter.reconcile(lease, 1).await.unwrap();
            panic!("not killed");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never admitted");
}

/// Spawns the child and kills it once it holds its reservation.
fn killed_holder(prefix: String) -> tokio::task::JoinHandle<Run> {
    tokio::task::spawn_blocking(move || {
        let mut child = spawn_child("limit::crashes::reserve_then_hang", &[(PREFIX, prefix)]);
        let lines = lines_of(&mut child);
        let held = wait_for(&lines, "HELD");
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success());
        let n: Vec<i64> = held.split(' ').map(|w| w.parse().unwrap()).collect();
        Run {
            subject: 0,
            estimate: CHILD_ESTIMATE,
            at: n[0],
            allowed: true,
            refused_by: None,
            held: Some(n[2] as usize),
            expires: n[1],
            end: End::Crashed,
        }
    })
}

fn micros(lease: &Lease) -> i64 {
    let since = lease.expires_at().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_micros() as i64
}

fn held(d: &Decision) -> Option<usize> {
    let l = d.limits.iter().find(|l| l.name == "inflight").unwrap();
    // An admitted call reports the permits left after its own; a refused
    // one, what is left now (nothing was taken).
    let after = usize::from(d.allowed);
    l.admitted.then(|| PERMITS - after - l.remaining as usize)
}

/// One task's runs until `left` is used up; leaked leases kept aside.
async fn runs(
    limiter: Limiter,
    redis: RedisBackend,
    left: Arc<AtomicU64>,
    mut rng: Rng,
) -> (Vec<Run>, Vec<Lease>) {
    let (mut done, mut leaked) = (Vec::new(), Vec::new());
    while left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        let subject = rng.range(0, 2) as usize;
        let estimate = if rng.next().is_multiple_of(2) {
            rng.range(1, 200)
        } else {
            rng.range(500, 4_000)
        };
        let d = limiter.reserve(SUBJECTS[subject], estimate).await.unwrap();
        assert_eq!(d.source, Source::Server, "{d:?}");
        let mut run = Run {
            subject,
            estimate,
            at: d.decided_at_us.unwrap(),
            allowed: d.allowed,
            refused_by: d.denied_by().map(str::to_owned),
            held: held(&d),
            expires: d.lease.as_ref().map_or(0, micros),
            end: End::Crashed,
        };
        if let Some(lease) = d.lease {
            if rng.range(1, 100) <= 5 {
                leaked.push(lease); // the caller crashed
            } else {
                tokio::time::sleep(Duration::from_micros(rng.range(0, 2_000))).await;
                let actual = rng.range(0, estimate);
                let before = server_time(&redis).await;
                let r = limiter.reconcile(&lease, actual).await.unwrap();
                let after = server_time(&redis).await;
                if r.settled {
                    assert_eq!(r.charged, actual as i64 - estimate as i64);
                }
                run.end = End::Reconciled {
                    actual,
                    settled: r.settled,
                    before,
                    after,
                };
            }
        }
        done.push(run);
    }
    (done, leaked)
}

/// `limit` per `period` with `burst`, as integers.
fn rate_of(policy: &Policy, name: &str) -> (u128, u128, u128) {
    let limit = policy.limits().iter().find(|l| l.name() == name).unwrap();
    let Kind::Rate {
        limit,
        period,
        burst,
    } = limit.kind()
    else {
        unreachable!()
    };
    (u128::from(limit), period.as_micros(), u128::from(burst))
}

/// Whether `charged` units within `elapsed_us` fit `burst + (elapsed +
/// 0.001 µs) × limit / period` (0.001 µs: the script's float tolerance).
fn fits(charged: u128, elapsed_us: i64, (limit, period, burst): (u128, u128, u128)) -> bool {
    1_000 * charged * period <= 1_000 * burst * period + (1_000 * elapsed_us as u128 + 1) * limit
}

/// Calls: within the rate over every span between two admissions. With
/// `v_k = k × period − t_k × limit` (scaled by 1,000), the span from i to j
/// fits iff `v_j − v_i + period ≤ burst × period + tolerance`: keeping the
/// least `v_i` so far checks every span in one pass.
fn check_calls(policy: &Policy, admitted: &[&Run]) {
    let (limit, period, burst) = rate_of(policy, "calls");
    let (limit, period, burst) = (limit as i128, period as i128, burst as i128);
    let mut least = i128::MAX;
    for (k, run) in admitted.iter().enumerate() {
        let v = 1_000 * (k as i128 * period - i128::from(run.at) * limit);
        least = least.min(v);
        assert!(
            v - least + 1_000 * period <= 1_000 * burst * period + limit,
            "calls over-admitted in a span ending at {}",
            run.at
        );
    }
}

/// Tokens: within the rate over every span from the first admission.
fn check_tokens(policy: &Policy, admitted: &[&Run]) -> u64 {
    let rate = rate_of(policy, "tokens");
    let mut charged = 0;
    for run in admitted {
        charged += run.charge();
        assert!(
            fits(u128::from(charged), run.at - admitted[0].at, rate),
            "tokens over-admitted: {charged} by {}",
            run.at
        );
    }
    charged
}

/// The quota: within its limit in every window (a refund only returns to
/// the window its reservation was taken in, so each window's admissions are
/// charged to it).
fn check_quota(admitted: &[&Run]) -> usize {
    let mut windows = std::collections::BTreeMap::new();
    for run in admitted {
        let (id, _) = window_of(Window::Every(QUOTA_WINDOW), run.at);
        *windows.entry(id).or_insert(0) += run.charge();
    }
    for (id, used) in &windows {
        assert!(
            *used <= 60_000,
            "quota over-admitted in window {id}: {used}"
        );
    }
    windows.len()
}

/// Permits: never more surely held than allowed, and the server's count
/// at each decision between those surely and possibly held.
fn check_permits(all: &[&Run], admitted: &[&Run]) {
    for run in all {
        let s = run.at;
        let (mut surely, mut possibly) = (0, 0);
        for other in admitted {
            let (sure, maybe) = other.held_until();
            // One decided in the same µs may have come before or after.
            if other.at < s && s < sure {
                surely += 1;
            }
            if other.at <= s && s < maybe && !std::ptr::eq(*other, *run) {
                possibly += 1;
            }
        }
        assert!(
            surely + usize::from(run.allowed) <= PERMITS,
            "{surely} permits surely held at {s}, and this one: {run:?}"
        );
        match run.held {
            Some(held) => assert!(
                surely <= held && held <= possibly,
                "at {s} the server counted {held} permits held; {surely} surely and \
                 {possibly} possibly were: {run:?}"
            ),
            None => assert!(
                possibly >= PERMITS,
                "at {s} the server refused a permit; only {possibly} possibly held: {run:?}"
            ),
        }
    }
}

/// Counts in Redis of `subject`'s permits, reservations and estimates.
async fn leftovers(redis: &RedisBackend, prefix: &str, subject: &str) -> [i64; 3] {
    let keys = SubjectKeys::new(prefix, "llm", subject);
    let mut conn = redis.connection();
    let mut count = async |verb: &str, key: &str| -> i64 {
        reposmith::redis::cmd(verb)
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    };
    [
        count("ZCARD", &keys.permits).await,
        count("ZCARD", &keys.reservations).await,
        count("HLEN", &keys.estimates).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_between_reserve_and_reconcile_never_over_admit_and_leak_nothing() {
    let total: u64 = if heavy() { 100_000 } else { 10_000 };
    let seed = seed();
    println!("seed {seed} (REPOSMITH_SEED reproduces the runs' choices)");
    let redis = backend().await;
    let prefix = unique_name("limcrash");
    let limiter = limiter(&redis, &prefix);
    let started = std::time::Instant::now();
    let killed = killed_holder(prefix.clone());
    let left = Arc::new(AtomicU64::new(total));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let rng = Rng(seed.wrapping_mul(1_000).wrapping_add(t));
            tokio::spawn(runs(limiter.clone(), redis.clone(), left.clone(), rng))
        })
        .collect();
    let (mut all, mut leaked) = (vec![killed.await.unwrap()], Vec::new());
    for task in tasks {
        let (done, crashed) = task.await.unwrap();
        all.extend(done);
        leaked.extend(crashed);
    }
    println!("{total} runs in {:?}", started.elapsed());
    assert_every_key_expires(&redis, &prefix).await;
    all.sort_by_key(|r| r.at);
    for (i, subject) in SUBJECTS.iter().enumerate() {
        let mine: Vec<&Run> = all.iter().filter(|r| r.subject == i).collect();
        let admitted: Vec<&Run> = mine.iter().copied().filter(|r| r.allowed).collect();
        let crashed = admitted
            .iter()
            .filter(|r| matches!(r.end, End::Crashed))
            .count();
        let late = admitted
            .iter()
            .filter(|r| matches!(r.end, End::Reconciled { settled: false, .. }))
            .count();
        check_calls(&policy(), &admitted);
        let tokens = check_tokens(&policy(), &admitted);
        let windows = check_quota(&admitted);
        check_permits(&mine, &admitted);
        let refused = |name: &str| {
            let by = |r: &&&Run| r.refused_by.as_deref() == Some(name);
            mine.iter().filter(by).count()
        };
        println!(
            "{subject}: {} decisions, {} admitted ({crashed} crashed, {late} reconciled \
             too late), {tokens} tokens charged over {} µs and {windows} quota windows; \
             refused by calls {}, tokens {}, inflight {}, quota {}",
            mine.len(),
            admitted.len(),
            admitted.last().unwrap().at - admitted[0].at,
            refused("calls"),
            refused("tokens"),
            refused("inflight"),
            refused("quota"),
        );
    }
    // Past every lease's end, on the server's clock.
    let last = all.iter().map(|r| r.expires).max().unwrap();
    while server_time(&redis).await <= last + 5_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for subject in SUBJECTS {
        assert_eq!(
            leftovers(&redis, &prefix, subject).await,
            [0; 3],
            "{subject}"
        );
        let probe = limiter.acquire(subject).await.unwrap();
        assert_eq!(held(&probe), Some(0), "{subject}: every permit is free");
        limiter.release(&probe.lease.unwrap()).await.unwrap();
    }
    for lease in leaked.into_iter().take(20) {
        let r = limiter.reconcile(&lease, 0).await.unwrap();
        assert!(!r.settled, "a leaked reservation settled at its estimate");
    }
    println!("whole test {:?}", started.elapsed());
}
