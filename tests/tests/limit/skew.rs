//! The application clock moved ±5 minutes changes nothing: two child
//! processes with libfaketime (`FAKETIME=+5m` and `-5m`) and this process
//! (the true clock) take turns checking, reserving, acquiring, reconciling,
//! renewing and releasing on one subject, and every answer is what an
//! in-process model fed only the Redis server's clock predicts:
//!
//! * each decision (allowed, the limit that refused, each limit's remaining,
//!   retry-after and reset-after) — a rate's to the µs, a daily quota's
//!   reset to the next 00:00 UTC on the server's clock;
//! * each decision's `decided_at_us` lies between two readings of the
//!   server's `TIME` taken around it, and each lease ends exactly its TTL
//!   after it (renewed: its TTL after the renewal);
//! * a permit taken by the fast child counts until its server-side expiry
//!   for the others, neither five minutes early nor late.

use std::collections::HashMap;
use std::io::Write;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reposmith::RedisBackend;
use reposmith::limit::{Lease, Limit, Limiter, LimiterOptions, Policy, Source, Window};
use reposmith_core::limit::gcra::{quota_step, window_of};
use reposmith_core::limit::{Kind, Unit};
use reposmith_tests::unique_name;

use super::basics::{assert_every_key_expires, backend};
use super::exactness::{ModelRate, lines_of, server_time, spawn_child, wait_for};

const PREFIX: &str = "REPOSMITH_LIMIT_SKEW_PREFIX";
const SUBJECT: &str = "tenant-skew";
const TTL: Duration = Duration::from_secs(30);
const PERMITS: u64 = 2;
const DAILY: u64 = 2_000;

fn policy() -> Policy {
    Policy::new("skew")
        .with(Limit::requests("rpm", 6, Duration::from_secs(60)).burst(3))
        .with(Limit::tokens("tpm", 3_000, Duration::from_secs(3_600)))
        .with(Limit::concurrency("inflight", PERMITS))
        .with(Limit::quota("daily", DAILY, Window::Day))
}

fn limiter(redis: &RedisBackend, prefix: &str) -> Limiter {
    let options = LimiterOptions::fail_closed()
        .prefix(prefix)
        .lease_ttl(TTL)
        .deny_cache(0);
    redis.limiter(policy(), options).unwrap()
}

fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// Runs one command (`check <label> <cost>`, `reserve <label> <estimate>`,
/// `acquire <label>`, `reconcile <label> <actual>`, `renew <label>`,
/// `release <label>`) and answers in one line.
async fn execute(limiter: &Limiter, leases: &mut HashMap<String, Lease>, command: &str) -> String {
    let w: Vec<&str> = command.split(' ').collect();
    let amount = || w[2].parse::<u64>().unwrap();
    match w[0] {
        "check" | "reserve" | "acquire" => {
            let d = match w[0] {
                "check" => limiter.check(SUBJECT, amount()).await,
                "reserve" => limiter.reserve(SUBJECT, amount()).await,
                _ => limiter.acquire(SUBJECT).await,
            }
            .unwrap();
            assert_eq!(d.source, Source::Server, "{d:?}");
            let expires = d.lease.as_ref().map_or(0, |l| micros(l.expires_at()));
            let mut out = format!(
                "{} {} {expires} {}",
                u8::from(d.allowed),
                d.decided_at_us.unwrap(),
                d.denied_by().unwrap_or("-")
            );
            for l in &d.limits {
                out.push_str(&format!(
                    " {} {} {} {} {}",
                    l.name,
                    u8::from(l.admitted),
                    l.remaining,
                    l.retry_after.as_micros(),
                    l.reset_after.as_micros()
                ));
            }
            if let Some(lease) = d.lease {
                leases.insert(w[1].to_owned(), lease);
            }
            out
        }
        "reconcile" => {
            let lease = leases.remove(w[1]).unwrap();
            let r = limiter.reconcile(&lease, amount()).await.unwrap();
            format!("{} {}", u8::from(r.settled), r.charged)
        }
        "renew" => {
            let lease = leases.get_mut(w[1]).unwrap();
            let renewed = limiter.renew(lease).await.unwrap();
            format!("{} {}", u8::from(renewed), micros(lease.expires_at()))
        }
        "release" => {
            let lease = leases.remove(w[1]).unwrap();
            u8::from(limiter.release(&lease).await.unwrap()).to_string()
        }
        other => panic!("unknown command {other}"),
    }
}

/// The child: prints its wall clock, then runs commands from stdin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the clock-skew test as a child process"]
async fn skewed_client() {
    let Ok(prefix) = std::env::var(PREFIX) else {
        return;
    };
    let limiter = limiter(&backend().await, &prefix);
    let mut leases = HashMap::new();
    println!("CLOCK {}", micros(SystemTime::now()));
    loop {
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await
        .unwrap()
        .unwrap();
        let command = line.trim();
        if command.is_empty() || command == "quit" {
            break;
        }
        println!("OUT {}", execute(&limiter, &mut leases, command).await);
    }
}

/// Who runs a command: this process or a skewed child.
enum Actor {
    Here(Limiter, HashMap<String, Lease>),
    Child(Child, mpsc::Receiver<String>),
}

impl Actor {
    fn skewed(skew: &str, prefix: &str) -> (Actor, i64) {
        let library = std::env::var("REPOSMITH_LIBFAKETIME").unwrap_or_else(|_| {
            panic!(
                "REPOSMITH_LIBFAKETIME is not set: run the suite with `cargo xtask test` \
                 (see `cargo xtask services env`)"
            )
        });
        let mut child = spawn_child(
            "limit::skew::skewed_client",
            &[
                (PREFIX, prefix.to_owned()),
                ("LD_PRELOAD", library),
                ("FAKETIME", skew.to_owned()),
                // tokio's timers and the deny cache run on the monotonic clock.
                ("DONT_FAKE_MONOTONIC", "1".to_owned()),
            ],
        );
        let lines = lines_of(&mut child);
        let theirs: i64 = wait_for(&lines, "CLOCK").parse().unwrap();
        (
            Actor::Child(child, lines),
            theirs - micros(SystemTime::now()),
        )
    }

    async fn run(&mut self, command: &str) -> String {
        match self {
            Actor::Here(limiter, leases) => execute(limiter, leases, command).await,
            Actor::Child(child, lines) => {
                writeln!(child.stdin.as_mut().unwrap(), "{command}").unwrap();
                wait_for(lines, "OUT")
            }
        }
    }
}

/// The script's semantics in process, on server timestamps only.
struct Model {
    policy: Policy,
    rates: HashMap<String, ModelRate>,
    daily: (i64, u64),
    /// Permits and reservations by label: expiry, reserved estimate, taken
    /// at, and each cost rate's TAT end right after it.
    leases: HashMap<String, (i64, u64, i64, HashMap<String, f64>)>,
    /// µs a cost rate may be off by after a refund whose server time is only
    /// known to lie between two `TIME` readings.
    slack_us: u64,
}

/// One limit's expected standing: name, admitted, remaining, retry, reset.
type Standing = (String, bool, u64, u64, u64);

impl Model {
    fn new() -> Model {
        let policy = policy();
        let rates = policy
            .limits()
            .iter()
            .filter(|l| matches!(l.kind(), Kind::Rate { .. }))
            .map(|l| (l.name().to_owned(), ModelRate::of(l)))
            .collect();
        Model {
            policy,
            rates,
            daily: (0, 0),
            leases: HashMap::new(),
            slack_us: 0,
        }
    }

    fn standing(&self, limit: &Limit, now: i64, cost: u64) -> Standing {
        let name = limit.name().to_owned();
        match limit.kind() {
            Kind::Rate { .. } => {
                let s = self.rates[limit.name()].judge(now, cost);
                (
                    name,
                    s.admitted,
                    s.remaining,
                    s.retry_after_us,
                    s.reset_after_us,
                )
            }
            Kind::Quota { .. } => {
                let (id, end) = window_of(Window::Day, now);
                let used = if self.daily.0 == id { self.daily.1 } else { 0 };
                let s = quota_step(DAILY, used, cost, (end - now) as u64);
                (
                    name,
                    s.admitted,
                    s.remaining,
                    s.retry_after_us,
                    s.reset_after_us,
                )
            }
            _ => {
                let held = self.leases.values().filter(|l| l.0 > now).count() as u64;
                let first = self.leases.values().map(|l| l.0).filter(|e| *e > now).min();
                let wait = first.map_or(0, |e| (e - now) as u64);
                if held < PERMITS {
                    (name, true, PERMITS - held - 1, 0, wait)
                } else {
                    (name, false, 0, wait.max(1), wait)
                }
            }
        }
    }

    /// A limit's standing at `now` with nothing charged.
    fn uncharged(&self, limit: &Limit, now: i64) -> Standing {
        let name = limit.name().to_owned();
        match limit.kind() {
            Kind::Rate { .. } => {
                let s = self.rates[limit.name()].uncharged(now);
                (name, true, s.remaining, 0, s.reset_after_us)
            }
            Kind::Quota { .. } => {
                let (id, end) = window_of(Window::Day, now);
                let used = if self.daily.0 == id { self.daily.1 } else { 0 };
                (name, true, DAILY - used, 0, (end - now) as u64)
            }
            _ => {
                let (_, _, remaining, retry, reset) = self.standing(limit, now, 1);
                (name, true, remaining + 1, retry, reset)
            }
        }
    }

    /// Checks a decision's answer and, when admitted, charges the model.
    fn decision(&mut self, command: &str, answer: &str, bracket: (i64, i64)) {
        let w: Vec<&str> = command.split(' ').collect();
        let a: Vec<&str> = answer.split(' ').collect();
        let (now, expires): (i64, i64) = (a[1].parse().unwrap(), a[2].parse().unwrap());
        assert!(
            bracket.0 <= now && now <= bracket.1,
            "{command}: decided at {now}, outside the server's {bracket:?}"
        );
        let cost = w.get(2).map_or(1, |c| c.parse().unwrap());
        let judged: Vec<&Limit> = self
            .policy
            .limits()
            .iter()
            .filter(|l| w[0] != "acquire" || matches!(l.kind(), Kind::Concurrency { .. }))
            .collect();
        let charged: Vec<Standing> = judged.iter().map(|l| self.standing(l, now, cost)).collect();
        let allowed = charged.iter().all(|s| s.1);
        // Refused as a whole: an admitting limit reports what it has now.
        let expected: Vec<Standing> = charged
            .into_iter()
            .zip(&judged)
            .map(|(s, l)| match allowed || !s.1 {
                true => s,
                false => self.uncharged(l, now),
            })
            .collect();
        assert_eq!(a[0] == "1", allowed, "{command}: {answer}");
        // A denial names the refusing limit that frees last.
        let denier = expected.iter().filter(|s| !s.1).max_by_key(|s| s.3);
        assert_eq!(a[3], denier.map_or("-", |s| s.0.as_str()), "{command}");
        for (limit, (want, got)) in judged.iter().zip(expected.iter().zip(a[4..].chunks(5))) {
            let got: Standing = (
                got[0].to_owned(),
                got[1] == "1",
                got[2].parse().unwrap(),
                got[3].parse().unwrap(),
                got[4].parse().unwrap(),
            );
            let slack = if limit.unit() == Unit::Cost && matches!(limit.kind(), Kind::Rate { .. }) {
                self.slack_us
            } else {
                0
            };
            let near = |x: u64, y: u64, by: u64| x.abs_diff(y) <= by;
            assert!(
                got.0 == want.0
                    && got.1 == want.1
                    && near(got.2, want.2, u64::from(slack > 0))
                    && near(got.3, want.3, slack)
                    && near(got.4, want.4, slack),
                "{command}: the server said {got:?}, the model {want:?}"
            );
        }
        if !allowed {
            assert_eq!(expires, 0, "{command}: a denial holds no lease");
            return;
        }
        assert_eq!(
            expires - now,
            TTL.as_micros() as i64,
            "{command}: the lease ends its TTL after the decision on the server clock"
        );
        for limit in &judged {
            match limit.kind() {
                Kind::Rate { .. } => {
                    let rate = self.rates.get_mut(limit.name()).unwrap();
                    let step = rate.judge(now, cost);
                    rate.apply(&step, now);
                }
                Kind::Quota { .. } => {
                    let (id, _) = window_of(Window::Day, now);
                    let used = if self.daily.0 == id { self.daily.1 } else { 0 };
                    self.daily = (id, used + cost);
                }
                _ => {}
            }
        }
        let reserved = if w[0] == "reserve" { cost } else { 0 };
        let ends = self
            .rates
            .iter()
            .map(|(name, rate)| (name.clone(), rate.tat_end()))
            .collect();
        self.leases
            .insert(w[1].to_owned(), (expires, reserved, now, ends));
    }

    /// A refund of `estimate − actual` at some time within `bracket`.
    fn reconcile(&mut self, label: &str, actual: u64, answer: &str, bracket: (i64, i64)) {
        let (expires, estimate, taken_at, ends) = self.leases.remove(label).unwrap();
        assert!(expires > bracket.1, "the lease is still open");
        let delta = actual as i64 - estimate as i64;
        assert_eq!(answer, format!("1 {delta}"), "reconcile {label}");
        // Applied at the bracket's end: cost rates may be off by its width.
        let at = bracket.1;
        for (name, rate) in self.rates.iter_mut().filter(|(_, r)| r.unit == Unit::Cost) {
            rate.settle(at, delta, ends[name]);
        }
        let (id, _) = window_of(Window::Day, at);
        let used = if self.daily.0 == id { self.daily.1 } else { 0 };
        let refundable = delta > 0 || window_of(Window::Day, taken_at).0 == id;
        let used = if refundable {
            (used as i64 + delta).max(0) as u64
        } else {
            used
        };
        self.daily = (id, used);
        self.slack_us = self.slack_us.max((bracket.1 - bracket.0) as u64 + 1);
    }

    /// A renewal: the new expiry is the TTL after a moment within `bracket`.
    fn renew(&mut self, label: &str, answer: &str, bracket: (i64, i64)) {
        let (renewed, expires) = answer.split_once(' ').unwrap();
        assert_eq!(renewed, "1", "renew {label}");
        let expires: i64 = expires.parse().unwrap();
        let ttl = TTL.as_micros() as i64;
        assert!(
            bracket.0 + ttl <= expires && expires <= bracket.1 + ttl,
            "renew {label}: expiry {expires} is not the TTL after the server's {bracket:?}"
        );
        self.leases.get_mut(label).unwrap().0 = expires;
    }
}

/// Runs `command` on `actor`, bracketed by the server's clock, and checks
/// the answer against the model.
async fn step(model: &mut Model, redis: &RedisBackend, actor: &mut Actor, command: &str) {
    let before = server_time(redis).await;
    let answer = actor.run(command).await;
    let bracket = (before, server_time(redis).await);
    let w: Vec<&str> = command.split(' ').collect();
    match w[0] {
        "reconcile" => model.reconcile(w[1], w[2].parse().unwrap(), &answer, bracket),
        "renew" => model.renew(w[1], &answer, bracket),
        "release" => {
            assert_eq!(answer, "1", "{command}");
            model.leases.remove(w[1]);
        }
        _ => model.decision(command, &answer, bracket),
    }
    println!("{command:<20} → {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_clock_five_minutes_off_changes_no_decision() {
    let redis = backend().await;
    let prefix = unique_name("limskew");
    let (mut fast, fast_by) = Actor::skewed("+5m", &prefix);
    let (mut slow, slow_by) = Actor::skewed("-5m", &prefix);
    for (by, want) in [(fast_by, 300), (slow_by, -300)] {
        assert!(
            (by / 1_000_000 - want).abs() < 30,
            "a child's clock is off by {by} µs, not {want} s: libfaketime did not take"
        );
    }
    let mut here = Actor::Here(limiter(&redis, &prefix), HashMap::new());
    let mut model = Model::new();
    // 0: this process, 1: the clock 5 min fast, 2: the clock 5 min slow.
    let steps: &[(u8, &str)] = &[
        (1, "check f1 100"),     // admitted, holds a permit
        (2, "reserve s1 1000"),  // admitted: a permit and a reservation
        (0, "check p1 1"),       // refused by inflight until f1's expiry
        (1, "release f1"),       // its permit frees at once
        (0, "check p2 1"),       // admitted; rpm's burst of 3 is used up
        (2, "check s2 1"),       // refused by rpm and inflight
        (2, "reconcile s1 400"), // 600 tokens back, in the same day
        (1, "acquire f2"),       // a permit only; rpm not judged
        (1, "renew f2"),         // its TTL from the server's now
        (0, "check p3 1600"),    // refused by rpm, inflight and the daily quota
        (2, "acquire s3"),       // refused: p2 and f2 hold both permits
        (0, "release p2"),       //
        (2, "acquire s3"),       // admitted now
        (1, "reserve f3 200"),   // refused by rpm and inflight; tpm and daily admit
        (2, "release s3"),       //
        (1, "release f2"),       //
    ];
    for (who, command) in steps {
        let actor = match who {
            0 => &mut here,
            1 => &mut fast,
            _ => &mut slow,
        };
        step(&mut model, &redis, actor, command).await;
    }
    for actor in [fast, slow] {
        if let Actor::Child(mut child, _) = actor {
            writeln!(child.stdin.as_mut().unwrap(), "quit").unwrap();
            assert!(child.wait().unwrap().success(), "a skewed child failed");
        }
    }
    assert_every_key_expires(&redis, &prefix).await;
}
