//! `cargo xtask bench -- queue`: end-to-end job throughput of Redis queues,
//! contenders interleaved in the same rounds (see [`crate::measure`]).
//!
//! Every contender enqueues N no-op jobs (about 60 bytes of JSON) from
//! `--producers` tasks while `--workers` workers handle and acknowledge
//! them; a round's rate is N over the time from the first enqueue to the
//! last acknowledgement, its latencies each job's enqueue-to-handler time.
//! The bench starts its own redis-server (a free port, a temporary
//! directory, `--maxmemory-policy noeviction --save "" --appendonly no`),
//! flushes it before every run of every contender, and kills it at the end;
//! it never touches the shared server on 6379.
//!
//! Contenders (one file each, see [`contender::Contender`]): `raw`, the
//! hand-written LPUSH/BLMOVE/LREM ceiling ([`raw`]), the baseline of the
//! ratios; `apalis`, apalis-redis 1.0 ([`apalis`]); `reposmith` and
//! `reposmith-batch`, reposmith's `Queue` + `Worker` with one `enqueue` per
//! job or `enqueue_many` of 100 ([`reposmith`]); `outbox` and `outbox-10`,
//! jobs enqueued in PostgreSQL units of work (1 or 10 per unit) and moved to
//! the queue by the outbox relay ([`outbox`]), whose latencies run from
//! `commit()` to the handler. The outbox contenders need `DATABASE_URL`
//! (`cargo xtask bench` brings Postgres up and sets it) and are skipped
//! without it; they run `--outbox-jobs` jobs a round, since a job costs a
//! transaction there, and are compared on rates.
//!
//! The warm-up run of each contender also prints what the server did for
//! it, per job: calls of each command (`INFO commandstats`, zeroed before
//! the run) and redis-server CPU time, the first things to look at when a
//! contender is slow.
//!
//! Options: `--jobs N` (default 20000), `--outbox-jobs N` (default a quarter
//! of `--jobs`), `--rounds N` (default 5, plus a warm-up), `--workers N` (8),
//! `--producers N` (4), `--only LIST` (comma-separated names:
//! raw,apalis,reposmith,reposmith-batch,outbox,outbox-10), `--quick` (2
//! rounds of 2000 jobs).

mod apalis;
mod contender;
mod outbox;
mod raw;
mod reposmith;
pub(crate) mod server;

use std::time::{Duration, Instant};

use contender::{Contender, Env};
use server::Server;

use crate::Result;
use crate::args::Flags;
use crate::measure::{Series, interleave};

/// Every contender by its option name; the first is the baseline.
fn contenders() -> Vec<(&'static str, Box<dyn Contender>)> {
    vec![
        ("raw", Box::new(raw::Raw::default())),
        ("apalis", Box::new(apalis::Apalis::default())),
        ("reposmith", Box::new(reposmith::Reposmith::single())),
        (
            "reposmith-batch",
            Box::new(reposmith::Reposmith::batched(reposmith::BATCH)),
        ),
        ("outbox", Box::new(outbox::Outbox::new(1))),
        ("outbox-10", Box::new(outbox::Outbox::new(10))),
    ]
}

/// Contenders that need PostgreSQL.
fn needs_postgres(name: &str) -> bool {
    name.starts_with("outbox")
}

#[derive(Debug)]
struct Options {
    jobs: usize,
    outbox_jobs: Option<usize>,
    rounds: usize,
    workers: usize,
    producers: usize,
    only: Vec<String>,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        jobs: 20_000,
        outbox_jobs: None,
        rounds: 5,
        workers: 8,
        producers: 4,
        only: Vec::new(),
    };
    let mut flags = Flags::new(args, "queue");
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--jobs" => o.jobs = flags.number(flag)?.max(1),
            "--outbox-jobs" => o.outbox_jobs = Some(flags.number(flag)?.max(1)),
            "--rounds" => o.rounds = flags.number(flag)?.max(1),
            "--workers" => o.workers = flags.number(flag)?.max(1),
            "--producers" => o.producers = flags.number(flag)?.max(1),
            "--only" => o.only = flags.list(flag)?,
            "--quick" => (o.rounds, o.jobs) = (2, 2_000),
            other => return Err(format!("queue bench: unknown option {other}").into()),
        }
    }
    Ok(o)
}

/// Runs the queue benchmark and prints its tables.
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let o = options(args)?;
    let has_postgres = std::env::var_os("DATABASE_URL").is_some();
    let mut sides: Vec<(&str, Box<dyn Contender>)> = contenders()
        .into_iter()
        .filter(|(name, _)| o.only.is_empty() || o.only.iter().any(|n| n == name))
        .filter(|(name, _)| {
            let skip = !has_postgres && o.only.is_empty() && needs_postgres(name);
            if skip {
                println!("note: {name} skipped: DATABASE_URL is not set");
            }
            !skip
        })
        .collect();
    if sides.is_empty() {
        return Err("queue bench: --only matched no contender \
             (raw, apalis, reposmith, reposmith-batch, outbox, outbox-10)"
            .into());
    }
    let outbox_jobs = o.outbox_jobs.unwrap_or((o.jobs / 4).max(1));
    let started = Instant::now();
    let server = Server::start().await?;
    let env = Env {
        url: server.url.clone(),
        workers: o.workers,
        producers: o.producers,
        round_limit: Duration::from_secs(120),
    };
    println!(
        "reposmith-bench queue: {} rounds (+1 warm-up) of {} no-op jobs per contender \
         ({} for the outbox ones), {} producers, {} workers; own redis-server {} at {}",
        o.rounds,
        o.jobs,
        outbox_jobs,
        o.producers,
        o.workers,
        server.version().await?,
        server.url
    );
    for (_, side) in &mut sides {
        side.setup(&env).await?;
    }
    let indexes: Vec<usize> = (0..sides.len()).collect();
    let series = interleave(&indexes, o.rounds, async |i, round| {
        server.flush().await?;
        let jobs = match needs_postgres(sides[i].0) {
            true => outbox_jobs,
            false => o.jobs,
        };
        // The warm-up also counts what the server did per job.
        let warm_up = round == usize::MAX;
        let cpu = match warm_up {
            true => server.reset_usage().await?,
            false => 0.0,
        };
        let sample = sides[i].1.run(&env, jobs).await?;
        if warm_up {
            let usage = server.usage(cpu).await?;
            println!(
                "  warm-up   {:<28} per job: {}",
                sides[i].1.label(),
                usage.per_job(jobs)
            );
        } else {
            println!(
                "  round {:>2}  {:<28} {:>9.0} jobs/s  ({:.2} s)",
                round + 1,
                sides[i].1.label(),
                sample.rate(),
                sample.wall.as_secs_f64()
            );
        }
        Ok(sample)
    })
    .await?;
    for (_, side) in &mut sides {
        side.teardown(&env).await?;
    }
    let labels: Vec<&str> = sides.iter().map(|(_, s)| s.label()).collect();
    print_table(&labels, &series);
    drop(server);
    println!("\nqueue bench: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Per contender: rate over all rounds, median round rate, p50/p99
/// enqueue-to-handler latency (commit-to-handler for the outbox ones),
/// median [min..max] per-round ratio to the first.
fn print_table(labels: &[&str], series: &[Series<usize>]) {
    println!(
        "\n{:<28} {:>12} {:>14} {:>10} {:>10}  ratio to {}: median [min..max] of rounds",
        "contender", "jobs/s", "median round", "p50", "p99", labels[0]
    );
    println!("{}", "-".repeat(120));
    let base = &series[0];
    for s in series {
        let ratio = if s.side == 0 {
            "1.00 (baseline)".to_owned()
        } else {
            let (median, min, max) = s.ratio_to(base);
            format!("{median:.2} [{min:.2}..{max:.2}]")
        };
        println!(
            "{:<28} {:>12.0} {:>14.0} {:>10} {:>10}  {ratio}",
            labels[s.side],
            s.rate(),
            s.median_rate(),
            millis(s.latency(0.5)),
            millis(s.latency(0.99)),
        );
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
