//! Exactness under concurrency: 4 processes × 32 tasks call `check` on one
//! subject as fast as they can for a fixed span, and
//!
//! * replaying every decision, in the order of the Redis server's clock,
//!   through the in-process GCRA model (`reposmith_core::limit::gcra::Gcra`)
//!   reproduces each decision exactly: allowed or not, each limit's
//!   remaining and retry-after;
//! * with one limit of 200/s and a burst of 200, the count admitted since
//!   the first call is, at every refusal, exactly `expected = burst +
//!   floor(span on the server's clock / interval)` (the issue asks for
//!   `[expected − 1, expected]`), and never above it overall;
//! * with two limits (calls and tokens, random costs), neither admits more
//!   than its burst plus what its rate allows over the span, and the model
//!   reproduces which limit refused each call.
//!
//! The span is measured on the server's clock from the decisions' own
//! `decided_at_us`, so the bound holds to the call. `REPOSMITH_HEAVY=1`
//! runs the same test for 10 s instead of 2 s.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reposmith::RedisBackend;
use reposmith::limit::{Limit, LimiterOptions, Policy, Source};
use reposmith_core::limit::gcra::{Gcra, Step};
use reposmith_core::limit::{Kind, Unit};
use reposmith_tests::unique_name;

use super::basics::{assert_every_key_expires, backend};

const SPEC: &str = "REPOSMITH_LIMIT_EXACT";
const PROCESSES: u64 = 4;
const TASKS: u64 = 32;
const SUBJECT: &str = "tenant-1";

/// Whether the longer variants of the bounded tests run (`REPOSMITH_HEAVY=1`).
/// The Redis server's clock, µs since the Unix epoch.
pub(crate) async fn server_time(redis: &RedisBackend) -> i64 {
    let mut conn = redis.connection();
    let t: Vec<i64> = reposmith::redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .unwrap();
    t[0] * 1_000_000 + t[1]
}

pub(crate) fn heavy() -> bool {
    reposmith_tests::heavy()
}

/// A seed for this run: `REPOSMITH_SEED`, or the clock's nanoseconds.
pub(crate) fn seed() -> u64 {
    std::env::var("REPOSMITH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            u64::from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
            )
        })
}

/// SplitMix64: reproducible from a printed seed, no dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// This test binary's ignored test `name` in a child process, with `env`
/// added, stdin and stdout piped.
pub(crate) fn spawn_child(name: &str, env: &[(&str, String)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--nocapture"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The child's stdout lines, as they come, on a channel.
pub(crate) fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (sent, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sent.send(line).is_err() {
                break;
            }
        }
    });
    received
}

/// The next line of `lines` starting with `tag`, within 30 s.
pub(crate) fn wait_for(lines: &mpsc::Receiver<String>, tag: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {tag} line from the child within 30 s"));
        if let Some(rest) = line.strip_prefix(tag) {
            return rest.trim().to_owned();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    OneLimit,
    TwoLimits,
}

fn policy(variant: Variant) -> Policy {
    let second = Duration::from_secs(1);
    match variant {
        // A burst of a whole second: the demand stays saturated through any
        // stall shorter than that, so no capacity is lost to idleness.
        Variant::OneLimit => {
            Policy::new("exact").with(Limit::requests("rps", 200, second).burst(200))
        }
        Variant::TwoLimits => Policy::new("exact2")
            .with(Limit::requests("rps", 200, second).burst(100))
            .with(Limit::tokens("tps", 3_000, second).burst(1_500)),
    }
}

fn cost(variant: Variant, rng: &mut Rng) -> u64 {
    match variant {
        Variant::OneLimit => 1,
        // Half small calls (the call rate binds), half large (tokens bind).
        Variant::TwoLimits if rng.next().is_multiple_of(2) => rng.range(1, 5),
        Variant::TwoLimits => rng.range(20, 60),
    }
}

/// One decision as the server made it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    at_us: i64,
    cost: u64,
    allowed: bool,
    /// Per limit: admitted, remaining, retry-after µs.
    limits: Vec<(bool, u64, u64)>,
}

impl Seen {
    fn line(&self) -> String {
        let mut line = format!("D {} {} {}", self.at_us, self.cost, u8::from(self.allowed));
        for (admitted, remaining, retry) in &self.limits {
            line.push_str(&format!(" {} {remaining} {retry}", u8::from(*admitted)));
        }
        line
    }

    fn parse(text: &str) -> Seen {
        let n: Vec<i64> = text.split(' ').map(|w| w.parse().unwrap()).collect();
        let limits = n[3..]
            .chunks_exact(3)
            .map(|c| (c[0] == 1, c[1] as u64, c[2] as u64))
            .collect();
        Seen {
            at_us: n[0],
            cost: n[1] as u64,
            allowed: n[2] == 1,
            limits,
        }
    }
}

/// The child: 32 tasks calling `check` until the span ends, then every
/// decision on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the exactness tests as a child process"]
async fn hammer() {
    let Ok(spec) = std::env::var(SPEC) else {
        return;
    };
    let words: Vec<&str> = spec.split(' ').collect();
    let variant = if words[1] == "1" {
        Variant::OneLimit
    } else {
        Variant::TwoLimits
    };
    let seed: u64 = words[2].parse().unwrap();
    let span = Duration::from_millis(words[3].parse().unwrap());
    let options = LimiterOptions::fail_closed()
        .prefix(words[0])
        .deny_cache(0)
        .response_timeout(Duration::from_secs(10));
    let limiter = backend().await.limiter(policy(variant), options).unwrap();
    println!("READY");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let deadline = Instant::now() + span;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut rng = Rng(seed.wrapping_mul(1_000).wrapping_add(task));
                let mut seen = Vec::new();
                while Instant::now() < deadline {
                    let cost = cost(variant, &mut rng);
                    let d = limiter.check(SUBJECT, cost).await.unwrap();
                    assert_eq!(d.source, Source::Server, "{d:?}");
                    seen.push(Seen {
                        at_us: d.decided_at_us.unwrap(),
                        cost,
                        allowed: d.allowed,
                        limits: d
                            .limits
                            .iter()
                            .map(|l| (l.admitted, l.remaining, l.retry_after.as_micros() as u64))
                            .collect(),
                    });
                }
                seen
            })
        })
        .collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for task in tasks {
        for seen in task.await.unwrap() {
            writeln!(out, "{}", seen.line()).unwrap();
        }
    }
    writeln!(out, "DONE").unwrap();
}

/// Runs the children under one prefix; every decision, in server order.
fn run_children(variant: Variant, prefix: &str, span: Duration) -> Vec<Seen> {
    let seed = seed();
    println!("seed {seed} (REPOSMITH_SEED reproduces the costs)");
    let code = if variant == Variant::OneLimit { 1 } else { 2 };
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let spec = format!("{prefix} {code} {} {}", seed + p, span.as_millis());
            let mut child = spawn_child("limit::exactness::hammer", &[(SPEC, spec)]);
            let lines = lines_of(&mut child);
            (child, lines)
        })
        .collect();
    for (_, lines) in &children {
        wait_for(lines, "READY");
    }
    // Start together: the span is the same for all four.
    for (child, _) in &mut children {
        writeln!(child.stdin.as_mut().unwrap(), "GO").unwrap();
    }
    let mut all = Vec::new();
    for (mut child, lines) in children {
        let mut count = 0;
        for line in lines.iter() {
            if let Some(rest) = line.strip_prefix("D ") {
                all.push(Seen::parse(rest));
                count += 1;
            }
        }
        assert!(child.wait().unwrap().success(), "a child failed");
        println!("a process made {count} decisions");
    }
    all.sort_by_key(|s| s.at_us);
    all
}

/// One rate limit of the model, in the script's representation: the TAT
/// offset as last written and the server time it was written at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModelRate {
    pub(crate) gcra: Gcra,
    pub(crate) unit: Unit,
    stored: f64,
    at: Option<i64>,
}

impl ModelRate {
    pub(crate) fn of(limit: &Limit) -> ModelRate {
        let Kind::Rate {
            limit: l,
            period,
            burst,
        } = limit.kind()
        else {
            panic!("{} is not a rate", limit.name());
        };
        ModelRate {
            gcra: Gcra::new(l, period, burst),
            unit: limit.unit(),
            stored: 0.0,
            at: None,
        }
    }

    /// The step for a call of `cost` at server time `now`.
    pub(crate) fn judge(&self, now: i64, cost: u64) -> Step {
        let ahead = self
            .at
            .map_or(0.0, |at| Gcra::decay(self.stored, (now - at) as f64));
        let charge = if self.unit == Unit::Calls { 1 } else { cost };
        self.gcra.step(ahead, charge)
    }

    pub(crate) fn apply(&mut self, step: &Step, now: i64) {
        self.stored = step.state;
        self.at = Some(now);
    }

    /// The standing at `now` without a charge: what a limit reports when
    /// the call as a whole was refused and nothing was charged.
    pub(crate) fn uncharged(&self, now: i64) -> Step {
        let ahead = self
            .at
            .map_or(0.0, |at| Gcra::decay(self.stored, (now - at) as f64));
        self.gcra.step(ahead, 0)
    }

    /// The absolute TAT (server µs), for capping a later refund.
    pub(crate) fn tat_end(&self) -> f64 {
        self.at.map_or(0.0, |at| at as f64 + self.stored)
    }

    /// A refund of `delta < 0` units at `now` gives back at most what of a
    /// reservation whose TAT ended at `tat_end` has not drained (a charge,
    /// `delta > 0`, is taken whole), as the script does.
    pub(crate) fn settle(&mut self, now: i64, delta: i64, tat_end: f64) {
        let ahead = self
            .at
            .map_or(0.0, |at| Gcra::decay(self.stored, (now - at) as f64));
        let mut change = delta as f64 * self.gcra.interval_us;
        if delta < 0 {
            change = change.max(-(tat_end - now as f64).max(0.0));
        }
        self.stored = (ahead + change).max(0.0);
        self.at = Some(now);
    }
}

/// Replays one decision through the model; whether it agreed.
fn replay_one(model: &mut [ModelRate], seen: &Seen) -> bool {
    let steps: Vec<Step> = model
        .iter()
        .map(|m| m.judge(seen.at_us, seen.cost))
        .collect();
    let allowed = steps.iter().all(|s| s.admitted);
    let limits: Vec<_> = steps
        .iter()
        .zip(model.iter())
        .map(|(s, m)| {
            // Refused as a whole: an admitting limit reports what it has now.
            let remaining = match allowed || !s.admitted {
                true => s.remaining,
                false => m.uncharged(seen.at_us).remaining,
            };
            (s.admitted, remaining, s.retry_after_us)
        })
        .collect();
    if allowed {
        for (m, s) in model.iter_mut().zip(&steps) {
            m.apply(s, seen.at_us);
        }
    }
    allowed == seen.allowed && limits == seen.limits
}

/// Replays a group of decisions made in the same µs: their order is
/// unknown, so any order that reproduces them all is accepted.
fn replay_tied(model: &mut Vec<ModelRate>, group: &[Seen]) -> bool {
    if group.len() == 1 {
        return replay_one(model, &group[0]);
    }
    assert!(group.len() <= 6, "{} decisions in one µs", group.len());
    for (i, first) in group.iter().enumerate() {
        let mut trial = model.clone();
        let rest: Vec<Seen> = group
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| s.clone())
            .collect();
        if replay_one(&mut trial, first) && replay_tied(&mut trial, &rest) {
            *model = trial;
            return true;
        }
    }
    false
}

/// Replays everything; the number of decisions in tied groups.
fn replay(policy: &Policy, all: &[Seen]) -> usize {
    let mut model: Vec<ModelRate> = policy.limits().iter().map(ModelRate::of).collect();
    let mut tied = 0;
    for group in all.chunk_by(|a, b| a.at_us == b.at_us) {
        if group.len() > 1 {
            tied += group.len();
        }
        assert!(
            replay_tied(&mut model, group),
            "the model disagrees with the server at {} µs: {group:?}",
            group[0].at_us
        );
    }
    tied
}

/// The most a rate admits between its first admission and `elapsed_us`
/// later: `burst + (elapsed + 0.001 µs) × limit / period`, the 0.001 µs
/// being the script's float tolerance.
fn most_admitted(limit: &Limit, elapsed_us: i64) -> u64 {
    let Kind::Rate {
        limit: l,
        period,
        burst,
    } = limit.kind()
    else {
        unreachable!()
    };
    let numerator = (elapsed_us as u128 * 1_000 + 1) * u128::from(l);
    burst + (numerator / (period.as_micros() * 1_000)) as u64
}

fn span() -> Duration {
    Duration::from_secs(if heavy() { 10 } else { 2 })
}

async fn exact(variant: Variant) -> (Vec<Seen>, Policy) {
    let prefix = unique_name("limx");
    let policy = policy(variant);
    let all = run_children(variant, &prefix, span());
    assert!(all.len() > 1_000, "too few decisions: {}", all.len());
    let tied = replay(&policy, &all);
    println!(
        "{} decisions over {} µs, {tied} in tied µs: every one reproduced by the model",
        all.len(),
        all.last().unwrap().at_us - all[0].at_us
    );
    assert_every_key_expires(&backend().await, &prefix).await;
    (all, policy)
}

/// Walks the decisions in server order: at every refusal the count
/// admitted so far must be exactly `expected = burst + floor((t − first) /
/// interval)`. A refusal means the TAT is within one interval of the
/// tolerance, and while demand keeps the TAT ahead of the clock (no
/// idleness) the TAT is `first + admitted × interval`: the two together pin
/// the count. Returns (refusals checked, the count and expected value at
/// the last one, whether demand stayed saturated).
fn count_at_refusals(rps: &Limit, all: &[Seen]) -> (usize, u64, u64, bool) {
    let first = all[0].at_us;
    let interval = 5_000;
    let (mut admitted, mut refusals, mut last) = (0u64, 0, (0, 0));
    for seen in all {
        if first + admitted as i64 * interval < seen.at_us {
            // The limit went idle: capacity was lost to a stall longer than
            // the burst, and the count is no longer pinned from here on.
            return (refusals, last.0, last.1, false);
        }
        if seen.allowed {
            admitted += 1;
            continue;
        }
        let expected = most_admitted(rps, seen.at_us - first);
        assert_eq!(
            admitted, expected,
            "admitted by the refusal at {} µs: exact to the call",
            seen.at_us
        );
        refusals += 1;
        last = (admitted, expected);
    }
    (refusals, last.0, last.1, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_admit_exactly_what_gcra_allows_on_the_server_clock() {
    let (all, policy) = exact(Variant::OneLimit).await;
    let rps = &policy.limits()[0];
    let first = all[0].at_us;
    assert!(all[0].allowed, "the first call finds the limit idle");
    let admitted: Vec<i64> = all.iter().filter(|s| s.allowed).map(|s| s.at_us).collect();
    let last_admitted = *admitted.last().unwrap();
    let count = admitted.len() as u64;
    let most = most_admitted(rps, last_admitted - first);
    assert!(count <= most, "over-admission: {count} > {most}");
    let (refusals, at_last, expected, saturated) = count_at_refusals(rps, &all);
    let gap = all.windows(2).map(|w| w[1].at_us - w[0].at_us).max();
    println!(
        "admitted {count} in all (at most {most}); at the last of {refusals} refusals \
         {at_last} admitted, expected {expected}; longest gap between decisions {gap:?} µs"
    );
    // Only a stall of the whole machine longer than the burst's second
    // idles the limit; the model replay above still held every decision.
    if !saturated {
        println!("the limit went idle during a stall: counts checked up to it only");
    }
    assert!(refusals > 1_000, "too few refusals to pin the count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limits_with_random_costs_never_admit_above_either_rate() {
    let (all, policy) = exact(Variant::TwoLimits).await;
    let first = all[0].at_us;
    let admitted: Vec<&Seen> = all.iter().filter(|s| s.allowed).collect();
    let elapsed = admitted.last().unwrap().at_us - first;
    let calls = admitted.len() as u64;
    let tokens: u64 = admitted.iter().map(|s| s.cost).sum();
    let denied_by = |i: usize| all.iter().filter(|s| !s.limits[i].0).count();
    let (most_calls, most_tokens) = (
        most_admitted(&policy.limits()[0], elapsed),
        most_admitted(&policy.limits()[1], elapsed),
    );
    println!(
        "admitted {calls} calls (at most {most_calls}) and {tokens} tokens (at most \
         {most_tokens}); rps refused {} times, tps {} times",
        denied_by(0),
        denied_by(1)
    );
    assert!(calls <= most_calls, "calls over-admitted");
    assert!(tokens <= most_tokens, "tokens over-admitted");
    // No lower bound here: the two limits take turns binding, and while one
    // binds the other may refill past its burst and lose capacity.
}
