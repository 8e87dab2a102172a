//! `cargo xtask bench recall`: the recall monitor and `ef_search` tuner on
//! isotropic 50k × 768 halfvec data (issue 11, "recall you can see").
//!
//! 1. Seeded isotropic clustered vectors — 100 isotropic Gaussian blobs
//!    (every coordinate N(0, 1) around its centre) whose centres are
//!    themselves Gaussian with coordinates of spread 0.45 (`--clusters`,
//!    `--spread`; `--clusters 0` is plain isotropic Gaussian) — are loaded
//!    with `insert_many` into a table without its index, then the derive's
//!    HNSW index (cosine, m = 16, ef_construction = 64) is built, as
//!    pgvector advises.
//! 2. The exact top-10 of a fixed set of queries from the same distribution
//!    is computed on the server (a sequential scan: `enable_indexscan` off).
//! 3. recall@10 at pgvector's default `ef_search` 40, checked against it.
//! 4. The tuner, with its defaults and a 0.95 target, on a store whose
//!    monitor samples a fraction of real searches from 4 tasks drawing
//!    those queries at random (bounded: 1 exact re-run at a time, a queue
//!    of 16, drops counted), until it settles and holds for a re-check block.
//! 5. The smallest `ef_search` whose exact-checked recall reaches the
//!    target, on a grid of 2.5 % steps from 40, beside where the tuner
//!    settled: it must be no higher than one tuner step (10 %) above it.
//!
//! The HNSW build is parallel and not deterministic: recall at `ef_search`
//! 40 was 0.874, 0.876 and 0.924 in three builds of this same data, and
//! where the tuner settles moves with it.
//!
//! # Measured
//!
//! One full-size run (`cargo xtask bench recall`, defaults), on the 2-core
//! machine shared with other builds: load average 4.24 / 3.41 / 3.98 at the
//! start, 7.54 / 4.90 / 4.44 at the end. 50,000 rows loaded by
//! `insert_many` in 0.5 s, HNSW built in 21.9 s, exact top-10 of the 200
//! queries in 11.1 s.
//!
//! | | ef_search | recall@10 |
//! |---|---|---|
//! | pgvector's default, exact-checked | 40 | 0.874 |
//! | tuner's path (its own measurement / samples) | 40 → 60 → 90 → 75 → 68 → 64 | 0.874/23, 0.935/200, 0.997/59, 0.975/200, 0.995/63 |
//! | where it settled, the monitor's figure | 64 | 0.946 over 279 samples |
//! | where it settled, exact-checked | 64 | 0.956 |
//! | smallest value reaching 0.95, exact-checked (grid of 2.5 % steps) | 63 | 0.950 |
//!
//! The tuner settled after 704 measured samples (904 by the end of its
//! re-check block; 54,810 searches in 102 s at a 0.25 sample rate, 12,896
//! samples dropped at the full queue): one above the smallest value that
//! reaches the target, within its one step of 7 (10 %), and recall there
//! reaches 0.95. The exact-checked curve is flat near the target (0.944 at
//! 55, 0.947 at 60, 0.950 at 63): a window of 200 samples has a standard
//! error near 0.015 there, so which of 55..70 a run settles on is decided by
//! sampling noise as much as by the index; longer windows (`max_samples`)
//! buy precision with time.
//!
//! Plain isotropic Gaussian data (`--clusters 0`) is beyond this index:
//! recall@10 0.07 at `ef_search` 40, 0.42 at 384 and 0.67 at 887; a tuner
//! there would stop at its ceiling (400) and report the target out of
//! reach, as `the_tuner_never_passes_its_ceiling` in `tests/tests/pg_recall.rs`
//! shows on small data.

mod data;
mod exact;
mod report;
mod tune;

use std::sync::Arc;
use std::time::Instant;

use reposmith::HalfVector;
use reposmith::prelude::*;
use reposmith_postgres::PgBackend;
use reposmith_postgres::recall::RecallConfig;

use crate::Result;
use data::{data, setup};
use exact::{Grid, truth};
use report::{Report, load_average};
use tune::tune;

/// A row of the benchmark: an id and a 768-dimension half-precision embedding.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_recall")]
pub(crate) struct Item {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(vector(
        dims = 768,
        distance = "cosine",
        index = "hnsw",
        m = 16,
        ef_construction = 64
    ))]
    pub(crate) embedding: HalfVector,
}

const DIMS: usize = 768;
const K: u32 = 10;
/// Concurrent search tasks (the grid and the tuner's traffic).
const TASKS: usize = 4;
/// Rows per `insert_many`: one COPY each.
const LOAD_BATCH: usize = 10_000;

/// What to run and how big.
#[derive(Debug, Clone)]
struct Options {
    rows: usize,
    queries: usize,
    clusters: usize,
    /// Standard deviation of the cluster centres' coordinates (points' is 1).
    spread: f64,
    rate: f64,
    target: f64,
    minutes: u64,
    keep: bool,
    seed: u64,
}

const USAGE: &str = "reposmith-bench recall [--rows N] [--queries N] [--clusters N] [--spread X] [--rate X] \
                     [--target X] [--minutes N] [--seed N] [--keep] [--quick]";

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            rows: 50_000,
            queries: 200,
            clusters: 100,
            spread: 0.45,
            rate: 0.25,
            target: 0.95,
            minutes: 15,
            keep: false,
            seed: 7,
        };
        let mut it = args.iter().filter(|a| *a != "recall");
        while let Some(arg) = it.next() {
            let mut value = || -> Result<String> {
                Ok(it
                    .next()
                    .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?
                    .clone())
            };
            match arg.as_str() {
                "--rows" => o.rows = value()?.parse()?,
                "--queries" => o.queries = value()?.parse::<usize>()?.max(10),
                "--clusters" => o.clusters = value()?.parse()?,
                "--spread" => o.spread = value()?.parse()?,
                "--rate" => o.rate = value()?.parse()?,
                "--target" => o.target = value()?.parse()?,
                "--minutes" => o.minutes = value()?.parse()?,
                "--seed" => o.seed = value()?.parse()?,
                "--keep" => o.keep = true,
                "--quick" => (o.rows, o.queries, o.minutes) = (5_000, 100, 5),
                other => return Err(format!("unknown option {other}\n{USAGE}").into()),
            }
        }
        Ok(o)
    }
}

/// Runs the benchmark and prints its report.
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let load_before = load_average();
    let pg = crate::vector::pg_config()?.max_connections(TASKS as u32 + 2);
    let plain = PgBackend::connect(&pg).await?;
    let (loaded, built) = setup(&plain, &opts).await?;
    let queries = data(&opts, opts.queries, opts.seed ^ 0x5151);
    let started = Instant::now();
    let truth = truth(plain.pool(), &queries).await?;
    eprintln!(
        "  exact top-{K} of {} queries: {:.1} s",
        queries.len(),
        started.elapsed().as_secs_f64()
    );
    let queries = Arc::new(queries);
    let grid = Grid {
        repo: plain.repo::<Item>(),
        queries: Arc::clone(&queries),
        truth: Arc::new(truth),
    };
    let at_default = grid.recall(40).await?;
    eprintln!("  recall@{K} at ef_search 40: {at_default:.3}");

    let recall = RecallConfig::sampled(opts.rate).tune_to(opts.target);
    let tuned = PgBackend::connect(&pg.clone().recall(recall)).await?;
    let run = tune(&tuned, &queries, &opts).await?;
    let settled = run.field.current.ok_or("the tuner has no value")?;
    let at_settled = grid.recall(settled).await?;
    let (smallest, evaluated) = grid.smallest(opts.target, 40, 1000).await?;
    let load_after = load_average();
    let report = Report {
        opts,
        loaded,
        built,
        at_default,
        run,
        at_settled,
        smallest,
        evaluated,
        load: (load_before, load_after),
    };
    report.print(tuned.recall().config());
    tuned.close().await;
    if !report.opts.keep {
        sqlx::query("DROP TABLE bench_recall")
            .execute(plain.pool())
            .await?;
    }
    plain.close().await;
    Ok(())
}
