//! `cargo xtask bench limits`: decisions per second and latency of issue
//! 15's rate limiter on Redis, sides interleaved in the same rounds (see
//! [`crate::measure`]).
//!
//! Four client processes ([`child`], `--processes`) of `--tasks` tasks
//! each run every side's decisions at once against one redis-server the
//! bench starts itself (as the queue and cache benches do: a free loopback
//! port, nothing on disk; never the shared one). Each round's rate is all
//! processes' decisions over the slowest one's wall time; latencies are
//! every decision's, from every process. Two tables: every call on one
//! subject, and every call on a subject drawn uniformly from `--subjects`
//! (10,000).
//!
//! Sides ([`decider`]), the first the ratios' baseline:
//!
//! * `redis_rate`: one GCRA limit, the bench's own script in the manner of
//!   go-redis' `redis_rate` ([`redis_rate`]), `EVALSHA` on the same kind of
//!   connection (the backend's shared multiplexed one).
//! * `single`: `Limiter::check` of a policy of one requests-per-minute limit.
//! * `three`: `check` of requests/min + tokens/min + a daily token quota:
//!   the LLM policy without its concurrency limit, one script call like
//!   `single`, so three ÷ single compares like with like.
//! * `four-check`: the whole LLM policy (those three and an in-flight
//!   limit), `check` only, one script call that also takes a permit; the
//!   permits are not released but expire (a 100 ms lease), so four-check ÷
//!   single is the "four-limit check" against one limit.
//! * `four`: the whole LLM policy:
//!   `check`, which takes a permit, then `release` of it, two round trips:
//!   what a caller really does per model call.
//! * `governor`: governor's keyed in-process limiter, one per process: the
//!   ceiling (no network). It runs `GOVERNOR_FACTOR` times the decisions,
//!   so its round is long enough to time.
//!
//! Every limit is far above what the machine can ask (sixty million a
//! minute, one per µs: the limiter's resolution), so decisions are admissions; denials and store failures are
//! counted and printed all the same. Under the tables: the ratios (median
//! of per-round ratios: rates, and p50 / p99 latencies taken per round),
//! each side's commands and redis-server time per decision (`INFO
//! commandstats`, zeroed before each run), and issue 15's targets met or
//! missed. The load average is printed at the start and the end.

mod child;
mod decider;
mod fleet;
mod redis_rate;
mod summary;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::Result;
use crate::args::Flags;
use crate::bench::{Side, Table};
use crate::measure::interleave;
use crate::queue::server::{Server, Usage};
use decider::{SIDES, name_of};
use fleet::{Counts, Fleet};

/// governor's decisions per round, as a multiple of the others'.
const GOVERNOR_FACTOR: usize = 100;

/// What to run and how big.
#[derive(Debug, Clone)]
struct Options {
    /// Measured rounds per table (after one warm-up round).
    rounds: usize,
    /// Decisions per process per side per round.
    decisions: usize,
    /// Client processes.
    processes: usize,
    /// Tasks per process.
    tasks: usize,
    /// Subjects of the many-subject table.
    subjects: usize,
    /// Sides to run (empty: all).
    only: Vec<String>,
    /// Set in a client process: its number.
    child: Option<usize>,
    /// A client process's server.
    url: String,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        rounds: 5,
        decisions: 4000,
        processes: 4,
        tasks: 4,
        subjects: 10_000,
        only: Vec::new(),
        child: None,
        url: String::new(),
    };
    let mut flags = Flags::new(args, "limits");
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--rounds" => o.rounds = flags.number(flag)?.max(1),
            "--decisions" => o.decisions = flags.number(flag)?.max(1),
            "--processes" => o.processes = flags.number(flag)?.max(1),
            "--tasks" => o.tasks = flags.number(flag)?.max(1),
            "--subjects" => o.subjects = flags.number(flag)?.max(1),
            "--only" => o.only = flags.list(flag)?,
            "--quick" => (o.rounds, o.decisions) = (3, 1500),
            "--child" => o.child = Some(flags.number(flag)?),
            "--url" => o.url = flags.value(flag)?,
            other => return Err(format!("limits bench: unknown option {other}").into()),
        }
    }
    if let Some(bad) = o.only.iter().find(|w| decider::side_named(w).is_none()) {
        let names: Vec<&str> = SIDES.iter().map(|(_, n)| *n).collect();
        return Err(format!("limits bench: --only {bad}: not one of {}", names.join(",")).into());
    }
    Ok(o)
}

/// One side's totals over its measured rounds in one table.
#[derive(Debug, Default, Clone)]
pub(crate) struct Totals {
    pub(crate) counts: Counts,
    /// Server calls by command.
    pub(crate) calls: BTreeMap<String, u64>,
    /// Microseconds the server spent in commands.
    pub(crate) command_us: u64,
    /// Server CPU seconds.
    pub(crate) cpu_s: f64,
}

impl Totals {
    fn add(&mut self, counts: Counts, usage: &Usage) {
        self.counts.add(counts);
        for (name, n) in &usage.calls {
            *self.calls.entry(name.clone()).or_default() += n;
        }
        self.command_us += usage.command_us;
        self.cpu_s += usage.cpu_s;
    }
}

/// Runs the limits benchmark (or, with `--child`, one client process).
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let o = options(args)?;
    if let Some(id) = o.child {
        return child::serve(&o.url, id, o.tasks, o.subjects).await;
    }
    let started = Instant::now();
    println!("load average at start: {}", crate::report::loadavg());
    let server = Server::start().await?;
    let mut fleet = Fleet::start(o.processes, o.tasks, o.subjects, &server.url)?;
    let sides: Vec<Side> = SIDES
        .iter()
        .filter(|(_, n)| o.only.is_empty() || o.only.iter().any(|w| w == n))
        .map(|(s, _)| *s)
        .collect();
    println!(
        "reposmith-bench limits: {} rounds (+1 warm-up), {} processes x {} tasks, {} decisions \
         per process per side per round (governor x{GOVERNOR_FACTOR}); own redis-server {} at {}; \
         limiter fail-closed, response timeout 1 s",
        o.rounds,
        o.processes,
        o.tasks,
        o.decisions,
        server.version().await?,
        server.url,
    );
    let mut tables = Vec::new();
    let mut notes = Vec::new();
    for subjects in [1, o.subjects] {
        let at = Instant::now();
        let (table, totals) = measure(&o, &server, &mut fleet, &sides, subjects).await?;
        eprintln!("  {}: {:.1} s", table.workload, at.elapsed().as_secs_f64());
        tables.push(table);
        notes.push(totals);
    }
    drop(fleet);
    crate::report::print_tables(&tables);
    summary::print(&tables, &notes);
    drop(server);
    println!("\nload average at end: {}", crate::report::loadavg());
    println!("limits bench: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One table: every side interleaved over `subjects` subjects.
async fn measure(
    o: &Options,
    server: &Server,
    fleet: &mut Fleet,
    sides: &[Side],
    subjects: usize,
) -> Result<(Table, Vec<(Side, Totals)>)> {
    let mut totals: Vec<(Side, Totals)> = sides.iter().map(|&s| (s, Totals::default())).collect();
    let series = interleave(sides, o.rounds, async |side, round| {
        let decisions = match side {
            Side::LimitGovernor => o.decisions * GOVERNOR_FACTOR,
            _ => o.decisions,
        };
        let cpu = server.reset_usage().await?;
        let (sample, counts) = fleet.run(name_of(side), subjects, decisions, round)?;
        let usage = server.usage(cpu).await?;
        if round != usize::MAX
            && let Some((_, t)) = totals.iter_mut().find(|(s, _)| *s == side)
        {
            t.add(counts, &usage);
        }
        Ok(sample)
    })
    .await?;
    let workload = match subjects {
        1 => "1 subject".to_owned(),
        n => format!("{n} subjects, uniform"),
    };
    let table = Table {
        workload,
        unit: "decision",
        series,
        baseline: 0,
    };
    Ok((table, totals))
}
