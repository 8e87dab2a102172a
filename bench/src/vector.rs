//! The vector search benchmark (issue 4): 100k x 384 seeded, clustered
//! vectors with a cosine HNSW index (m = 16, ef_construction = 64).
//!
//! Measured, in order: `insert_many` of the rows into a table without the
//! index; the derive's `CREATE INDEX ... USING hnsw` (the build time);
//! then, for top-10 at `ef_search` 40 and 100, without a filter and with a
//! filter on an unindexed column matching 1 % of the rows: recall@10 of a
//! fixed sample of queries against exact cosine neighbours computed here,
//! and p50/p99 latency and QPS from 8 tasks at once, interleaved in rounds
//! against hand-written sqlx sending the same statement text in the same
//! transaction + `set_config` pattern (on the pool, and on a connection held
//! per task). Two diagnostic sides (see [`sides`]) split the cost of the
//! `ef_search` transaction, and `cpu/op` is this process's CPU per search.
//!
//! The HNSW build is parallel and so not deterministic: recall moves by
//! about 0.01 from one run to the next.

mod check;
pub(crate) mod data;
mod raw;
mod report;
mod run;
mod setup;

use std::sync::Arc;
use std::time::Instant;

use reposmith::prelude::*;
use reposmith::{PgConfig, Vector};

use crate::Result;
use crate::args::Options;
use crate::bench::{Side, own_pool};
use crate::measure::{Series, interleave};
use data::{Clustered, SplitMix};
use run::Shared;

/// A document chunk with its embedding; `shard` (`id % 100`) is deliberately
/// not indexed, so a filter on it runs on the HNSW index with iterative scans.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_vectors")]
pub(crate) struct Doc {
    #[repo(id)]
    pub(crate) id: i64,
    pub(crate) shard: i32,
    #[repo(vector(
        dims = 384,
        distance = "cosine",
        index = "hnsw",
        m = 16,
        ef_construction = 64
    ))]
    pub(crate) embedding: Vector,
}

/// The embedding's dimension.
pub(crate) const DIMS: usize = 384;
/// Results per search.
pub(crate) const K: u32 = 10;
/// Distinct `shard` values: a filter on one matches 1 % of the rows.
pub(crate) const SHARDS: usize = 100;
const CLUSTERS: usize = 100;
/// Concurrent tasks of the timed searches (and the pool size).
const TASKS: usize = 8;
/// Distinct query vectors the timed searches draw from.
const QUERIES: usize = 1000;
/// Queries whose recall is measured against exact neighbours.
const SAMPLE: usize = 100;
const SEED: u64 = 42;

/// One measured configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    pub(crate) ef: u32,
    pub(crate) filtered: bool,
}

const CASES: [Case; 4] = [
    Case {
        ef: 40,
        filtered: false,
    },
    Case {
        ef: 100,
        filtered: false,
    },
    Case {
        ef: 40,
        filtered: true,
    },
    Case {
        ef: 100,
        filtered: true,
    },
];

/// pgvector's default `hnsw.ef_search`: a search without the knob is the same search.
const DEFAULT_EF: u32 = 40;

/// The sides of `case`; raw sqlx on the pool (index 1) is the baseline.
/// Two diagnostics where they tell most: where `ef_search` is the server's
/// default, reposmith without the knob (what the transaction around
/// `set_config` costs); on the fast unfiltered searches, raw sqlx with
/// `BEGIN` and `SET LOCAL` in one round trip (what batching would save).
fn sides(case: Case) -> Vec<Side> {
    let mut sides = vec![Side::Reposmith, Side::Raw, Side::RawHeld];
    if case.ef == DEFAULT_EF {
        sides.push(Side::ReposmithNoKnobs);
    }
    if !case.filtered {
        sides.push(Side::RawBatched);
    }
    sides
}

/// One case's numbers, per side in [`sides`] order.
pub(crate) struct CaseResult {
    pub(crate) case: Case,
    pub(crate) series: Vec<Series<Side>>,
    pub(crate) recall: Vec<f64>,
    /// Fewest rows any search returned (recall and timed runs).
    pub(crate) fewest: Vec<usize>,
    /// Client CPU per timed search, in microseconds (this process, all threads).
    pub(crate) cpu_us: Vec<f64>,
    /// The plan's scan node for this case.
    pub(crate) plan: String,
}

/// What was loaded and how long the heavy steps took.
pub(crate) struct Setup {
    pub(crate) rows: usize,
    pub(crate) load_secs: f64,
    pub(crate) build_secs: f64,
    pub(crate) exact_secs: f64,
    pub(crate) index_sql: String,
    pub(crate) settings: String,
}

/// `DATABASE_URL` with reposmith's defaults and the `REPOSMITH_PG_*` variables.
pub(crate) fn pg_config() -> Result<PgConfig> {
    Ok(Config::from_env()?
        .postgres
        .ok_or("DATABASE_URL is not set")?)
}

/// Runs the whole vector benchmark and prints its table.
pub(crate) async fn run(opts: &Options) -> Result<()> {
    let rows = opts.vector_rows;
    let pg = pg_config()?.max_connections(TASKS as u32);
    let store = Store::connect(Config::new().with_postgres(pg)).await?;
    let raw = match opts.own_pool {
        true => own_pool(Some(TASKS as u32))?,
        false => store.postgres()?.pool().clone(),
    };
    let repo = store.postgres()?.repo::<Doc>();
    setup::create(&raw).await?;
    let mut rng = SplitMix::new(SEED);
    let set = Clustered::new(DIMS, CLUSTERS, &mut rng);
    let (exact, load) = setup::load(&repo, &set, rows, &mut rng).await?;
    eprintln!("  vector load: {:.1} s", load.as_secs_f64());
    setup::check_ids(&raw, rows).await?;
    let (build, index_sql) = setup::build_index().await?;
    eprintln!("  hnsw build: {:.1} s", build.as_secs_f64());
    let queries: Vec<(Vector, i32)> = (0..QUERIES)
        .map(|i| {
            let v = Vector::from(set.query(i, 1_000_000 + i as u64));
            (v, (i % SHARDS) as i32)
        })
        .collect();
    check::same_sql(&raw, &queries[0].0).await?;
    let started = Instant::now();
    let truth = truth(&exact, &queries);
    drop(exact);
    let mut setup = Setup {
        rows,
        load_secs: load.as_secs_f64(),
        build_secs: build.as_secs_f64(),
        exact_secs: started.elapsed().as_secs_f64(),
        index_sql,
        settings: String::new(),
    };
    let shared = Shared {
        repo,
        raw: raw.clone(),
        queries: Arc::new(queries),
    };
    let mut results = Vec::new();
    for case in CASES {
        let started = Instant::now();
        results.push(measure(&shared, case, &truth, opts).await?);
        eprintln!(
            "  {}: {:.1} s",
            report::case_name(case),
            started.elapsed().as_secs_f64()
        );
    }
    // Read last: pgvector's settings exist in a session once it has used pgvector.
    setup.settings = setup::settings(&raw).await?;
    report::print(&setup, &results, TASKS, opts);
    if !opts.keep_vectors {
        sqlx::query("DROP TABLE bench_vectors")
            .execute(&raw)
            .await?;
    }
    store.close().await;
    Ok(())
}

/// Exact top-`K` ids of the sample queries: (unfiltered, within the query's shard).
fn truth(exact: &data::Exact, queries: &[(Vector, i32)]) -> Vec<(Vec<usize>, Vec<usize>)> {
    let k = K as usize;
    queries
        .iter()
        .take(SAMPLE)
        .map(|(v, shard)| {
            let v = v.as_slice();
            let all = exact.nearest(v, k, |_| true);
            let within = exact.nearest(v, k, |i| setup::shard_of(i) == *shard);
            (all, within)
        })
        .collect()
}

/// Recall of every side on the sample, then the interleaved timed rounds.
async fn measure(
    s: &Shared,
    case: Case,
    truth: &[(Vec<usize>, Vec<usize>)],
    opts: &Options,
) -> Result<CaseResult> {
    let sides = sides(case);
    let mut recall = Vec::new();
    let mut fewest = vec![usize::MAX; sides.len()];
    for (i, &side) in sides.iter().enumerate() {
        let mut sum = 0.0;
        for (q, (all, within)) in truth.iter().enumerate() {
            let ids = run::ids(s, side, case, q).await?;
            fewest[i] = fewest[i].min(ids.len());
            // Ids are positions + 1.
            let found: Vec<usize> = ids.iter().map(|&id| id as usize - 1).collect();
            sum += data::recall(if case.filtered { within } else { all }, &found);
        }
        recall.push(sum / truth.len().max(1) as f64);
    }
    // Filtered searches are about 5x slower: half as many keep the run short.
    let ops = if case.filtered {
        opts.vector_ops / 2
    } else {
        opts.vector_ops
    };
    let per_task = (ops / TASKS).max(1);
    let mut cpu = vec![(0u64, 0u64); sides.len()];
    let series = interleave(&sides, opts.vector_rounds, async |side, round| {
        let before = run::cpu_ns();
        let (sample, rows) = run::round(s, side, case, (TASKS, per_task), round).await?;
        let i = sides.iter().position(|x| *x == side).unwrap_or(0);
        fewest[i] = fewest[i].min(rows);
        if round != usize::MAX {
            cpu[i].0 += run::cpu_ns().saturating_sub(before);
            cpu[i].1 += sample.units;
        }
        Ok(sample)
    })
    .await?;
    let cpu_us = cpu
        .iter()
        .map(|&(ns, n)| ns as f64 / 1e3 / n.max(1) as f64)
        .collect();
    let (vector, shard) = &s.queries[0];
    let plan = raw::plan(&s.raw, case, vector, *shard).await?;
    Ok(CaseResult {
        case,
        series,
        recall,
        fewest,
        cpu_us,
        plan,
    })
}
