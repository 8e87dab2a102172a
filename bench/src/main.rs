//! `reposmith-bench`: reposmith's Postgres repository against hand-written
//! sqlx 0.9 doing the same work, in one process, on one database.
//!
//! Run it with `cargo xtask bench [-- OPTIONS]`, which starts PostgreSQL and
//! builds in release mode; `--help` lists the options.
//!
//! Each workload runs a warm-up round and then interleaved rounds (see
//! [`measure`]); the table shows, per side, the rate over all rounds, p50 and
//! p99 latency, and the median of per-round rate ratios to the baseline
//! (raw sqlx on `&PgPool`; for `insert_many` the fastest raw bulk path).
//!
//! Fairness: by default raw sqlx runs on the very pool the store built, so
//! pool settings cannot differ; `--own-pool` gives it a pool built with
//! `PgPoolOptions` from `PgConfig`'s defaults instead. Two extra sides split
//! the cost of a read: raw sqlx on a connection held across calls (no pool
//! round trip, no return-to-pool ping) and reposmith inside a unit of work
//! (its own held connection).
//!
//! `vector` (see [`vector`]) is the vector search benchmark; `crud` the
//! rest. With neither word both run; `cargo xtask bench vector` runs it alone.
//! `cargo xtask bench ingest` runs [`ingest`], insert_many against bulk_load.
//! `cargo xtask bench mongo` runs [`mongo`], the MongoDB benchmark, alone;
//! `cargo xtask bench recall` runs [`recall`], the recall monitor and tuner's.
//! `cargo xtask bench queue` runs [`queue`], Redis job queues end to end, on
//! a redis-server of its own. `cargo xtask bench cache` runs [`cache`], the
//! repository cache against the database, also on a redis-server of its own.
//! `cargo xtask bench limits` runs [`limits`], the rate limiter's decisions
//! from four client processes, on a redis-server of its own too.
//! `cargo xtask bench associations` runs [`associations`], Diesel's
//! `loading_associations` (users → posts → comments) against raw sqlx.
//! `cargo xtask bench replicas` runs [`replicas`], reads on the primary
//! alone against reads routed to a streaming replica, and read-your-writes.
//! `cargo xtask bench tenancy` runs [`tenancy`], one tenant's reads by hand
//! against `for_tenant` repositories, with and without row-level security.
//! `cargo xtask bench testkit` runs [`testkit`], `#[reposmith::test]`'s
//! per-test setup against `#[sqlx::test]`'s.

mod args;
mod associations;
mod batches;
mod bench;
mod bulk;
mod cache;
mod heavy;
mod ingest;
mod item;
mod limits;
mod measure;
mod mongo;
mod queue;
mod raw;
mod recall;
mod replicas;
mod report;
mod tenancy;
mod testkit;
mod vector;
mod workloads;

use std::process::ExitCode;
use std::time::Instant;

use args::Options;
use bench::Bench;

/// The bench's error type: any error, reported once at the top.
pub(crate) type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "associations") {
        return associations::run(args).await;
    }
    if args.iter().any(|a| a == "ingest") {
        return ingest::run(args).await;
    }
    if args.iter().any(|a| a == "mongo") {
        return mongo::run(args).await;
    }
    if args.iter().any(|a| a == "queue") {
        return queue::run(args).await;
    }
    if args.iter().any(|a| a == "cache") {
        return cache::run(args).await;
    }
    if args.iter().any(|a| a == "limits") {
        return limits::run(args).await;
    }
    if args.iter().any(|a| a == "tenancy") {
        return tenancy::run(args).await;
    }
    if args.iter().any(|a| a == "testkit") {
        return testkit::run(args).await;
    }
    if args.iter().any(|a| a == "replicas") {
        return replicas::run(args).await;
    }
    if args.iter().any(|a| a == "recall") {
        return recall::run(args).await;
    }
    let opts = Options::parse(args)?;
    if let Some(side) = &opts.memory_child {
        return heavy::child(opts.bulk_rows, side).await;
    }
    let started = Instant::now();
    if opts.crud {
        crud(opts.clone()).await?;
    }
    if opts.batches {
        let tables = step("small batches", batches::run(&opts)).await?;
        report::print_tables(&tables);
    }
    if opts.vector {
        let at = Instant::now();
        vector::run(&opts).await?;
        eprintln!("  vector search: {:.1} s", at.elapsed().as_secs_f64());
    }
    println!("\ntotal {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The single-row, concurrent and bulk workloads, and their tables.
async fn crud(opts: Options) -> Result<()> {
    println!(
        "reposmith-bench: {} rounds (+1 warm-up), {} ops per side per round, {} seeded rows, \
         insert_many of {} rows; raw sqlx on {}",
        opts.rounds,
        opts.ops,
        opts.seed_rows,
        opts.bulk_rows,
        if opts.own_pool {
            "its own pool"
        } else {
            "the store's pool"
        },
    );
    let mut b = Bench::setup(opts).await?;
    let mut tables = vec![
        step("single insert", workloads::insert(&mut b)).await?,
        step("get by id", workloads::get(&mut b)).await?,
        step("find", workloads::find(&mut b)).await?,
        step("update", workloads::update(&mut b)).await?,
        step("get_many", workloads::get_many(&mut b)).await?,
        step("concurrent get", workloads::concurrent_get(&mut b)).await?,
        step("pool overhead", workloads::pool_overhead(&mut b)).await?,
    ];
    tables.extend(step("insert_users", batches::insert_users(&b.opts)).await?);
    // Last: it truncates the table the reads were seeded into.
    tables.push(step("insert_many", heavy::insert_many(&mut b)).await?);
    report::print_tables(&tables);
    if b.opts.memory {
        let peaks = heavy::peaks(&b)?;
        report::print_peaks(b.opts.bulk_rows, &peaks);
    } else {
        println!("\npeak memory: skipped (--no-memory)");
    }
    Ok(())
}

/// Runs one workload and says on stderr how long it took.
async fn step<T>(name: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let done = work.await?;
    eprintln!("  {name}: {:.1} s", started.elapsed().as_secs_f64());
    Ok(done)
}
