//! `cargo xtask bench ingest`: loading 50k × 768 halfvec rows into a table
//! whose HNSW index already exists (cosine, m = 16, ef_construction = 64,
//! as `create_tables` makes it), three ways (issue 11, "vector ingest"):
//!
//! - `insert_many`: batches of 5,000 rows, one COPY each; every row walks
//!   the graph.
//! - `bulk_load`: the table is empty, so `LoadMode::Auto` takes the
//!   exclusive path: drop the index, COPY, build it with a sized
//!   `maintenance_work_mem` and the server's parallel workers, in one
//!   transaction.
//! - `bulk_load online`: `LoadMode::Online` with `Rebuild::Always`: COPY with
//!   the index in place (the same walk), then `REINDEX INDEX CONCURRENTLY`;
//!   what a table being read while it grows pays for a rebuilt graph.
//!
//! Each starts from a fresh table. The data are seeded clustered vectors
//! (`vector/data.rs`: 100 centres, ±0.25 per coordinate), rounded to half
//! precision as stored; recall@10 is measured over a fixed sample of queries
//! against exact cosine neighbours computed here, at `ef_search` 40, 100,
//! 200 and 400, with the worst query's recall beside the mean, and the plan
//! is checked to be an HNSW index scan. The store runs with a 10-minute
//! statement timeout so `insert_many`'s batches are not cut. `--repeat N`
//! runs each path N times (the HNSW build is not deterministic);
//! `--clusters`, `--hnsw`, `--workers` vary the data, the index and the
//! build; the diagnostic sides `reindex` and `reindex_concurrently` load
//! with `bulk_load`, then rebuild by hand.
//!
//! # Measured
//!
//! `cargo xtask bench ingest -- --repeat 2`, 2-core test machine, load
//! average 1.11 before and 2.73 after; Postgres 16.14, pgvector 0.8.5,
//! `max_parallel_maintenance_workers` 2, `shared_buffers` 128MB:
//!
//! | path | wall s | rows/s | vs insert_many | recall@10 ef 40 (worst) | ef 100 (worst) | ef 200 (worst) | ef 400 (worst) |
//! |---|---:|---:|---:|---:|---:|---:|---:|
//! | insert_many | 88.7 | 564 | 1.00 | 0.964 (0.0) | 0.980 (0.0) | 0.982 (0.0) | 0.982 (0.0) |
//! | insert_many | 88.4 | 566 | 1.00 | 0.972 (0.8) | 0.987 (0.8) | 0.989 (0.8) | 0.989 (0.8) |
//! | bulk_load | 10.7 | 4653 | 0.12 | 0.956 (0.0) | 0.979 (0.0) | 0.981 (0.0) | 0.981 (0.0) |
//! | bulk_load | 11.1 | 4519 | 0.12 | 0.972 (0.8) | 0.989 (0.9) | 0.990 (0.9) | 0.990 (0.9) |
//! | bulk_load online | 107.7 | 464 | 1.21 | 0.941 (0.0) | 0.963 (0.0) | 0.965 (0.0) | 0.974 (0.0) |
//! | bulk_load online | 109.1 | 458 | 1.23 | 0.934 (0.0) | 0.949 (0.0) | 0.951 (0.0) | 0.980 (0.0) |
//!
//! bulk_load: exclusive; 0.1 s checking, 0.3 s COPY, 10.2–10.5 s building
//! with 134 MiB of `maintenance_work_mem` (estimated need 133 MiB) and 2
//! parallel workers seen, 0.1 s ANALYZE. Online: COPY 89–93 s (the walk),
//! concurrent rebuild 14.5–19.7 s.
//!
//! Recall varies from graph to graph more than from path to path. At
//! ef_search 100, over all runs on this data (the others at load averages
//! 2–6): 5 graphs grown by insert_many 0.967–0.989 (mean 0.981); 14 built
//! by exclusive bulk loads 0.963–0.989 (0.979), serial builds
//! (`--workers 0`) among them no better; 9 rebuilt by `REINDEX` or
//! `REINDEX CONCURRENTLY` 0.949–0.986 (0.971). None reached 0.99; ef_search
//! 400 lifts a graph by at most 0.01 (a cluster of 500 tight points with no
//! node on the upper layers cannot be entered: the 0/10 queries). With
//! `--clusters 1000`: 0.985 and 0.992 (bulk_load); with
//! `--hnsw "m = 16, ef_construction = 128"`: 0.994 and 0.983 in 22–23 s;
//! `m = 24`: 0.981 and 0.984 in 29–31 s. Wall times at load average 4–6
//! were up to twice these (insert_many 121.7 and 183.8 s, bulk_load 14–18 s;
//! the ratio stayed 0.12–0.16).

use crate::vector::data;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reposmith::postgres::bulk_load::{
    BulkLoad, LoadMode, LoadPhase, LoadProgress, LoadReport, Rebuild,
};
use reposmith::prelude::*;
use reposmith::{HalfVector, PgBackend, PgRepository, PostgresEntity};
use sqlx::PgPool;

use crate::Result;
use data::{Clustered, Exact, SplitMix};

const K: u32 = 10;
const CLUSTERS: usize = 100;
const SEED: u64 = 11;
/// The `ef_search` values recall is measured at.
const EF_SEARCH: [u32; 4] = [40, 100, 200, 400];
/// Rows per `insert_many` call on the baseline side.
const INSERT_BATCH: usize = 5_000;

/// A row of the benchmark of one dimension: the trait lets one generic
/// run serve every `--dims` (the dimension is part of the derive).
trait IngestDoc: PostgresEntity + Clone {
    const DIMS: usize;
    fn new(embedding: HalfVector) -> Self;
    fn row_id(&self) -> i64;
    /// Ids of the `k` nearest to `query` at `ef_search` `ef`.
    fn nearest(
        repo: &PgRepository<Self>,
        query: HalfVector,
        ef: u32,
    ) -> impl Future<Output = reposmith::Result<Vec<i64>>>;
}

macro_rules! ingest_docs {
    ($($name:ident => $dims:tt),* $(,)?) => {$(
        /// A benchmark row with an embedding of this many dimensions.
        #[derive(Debug, Clone, Repository)]
        #[repo(table = "bench_ingest")]
        struct $name {
            #[repo(id)]
            id: i64,
            #[repo(vector(dims = $dims, distance = "cosine", index = "hnsw", m = 16, ef_construction = 64))]
            embedding: HalfVector,
        }

        impl IngestDoc for $name {
            const DIMS: usize = $dims;
            fn new(embedding: HalfVector) -> Self {
                $name { id: 0, embedding }
            }
            fn row_id(&self) -> i64 {
                self.id
            }
            async fn nearest(
                repo: &PgRepository<Self>,
                query: HalfVector,
                ef: u32,
            ) -> reposmith::Result<Vec<i64>> {
                let hits = repo.search_embedding(query, K).ef_search(ef).await?;
                Ok(hits.iter().map(|h| h.entity.row_id()).collect())
            }
        }
    )*};
}

ingest_docs!(Doc32 => 32, Doc64 => 64, Doc128 => 128, Doc384 => 384, Doc768 => 768, Doc1536 => 1536);

/// What to run.
struct Options {
    rows: usize,
    dims: usize,
    queries: usize,
    sides: Vec<Side>,
    /// Runs of each side (the HNSW build is not deterministic).
    repeat: usize,
    /// Cluster centres of the data set (rows / clusters points around each).
    clusters: usize,
    /// HNSW parameters replacing the derive's (`m = 24, ef_construction = 128`).
    hnsw: Option<String>,
    /// `parallel_workers` for bulk_load (default: the server's setting).
    workers: Option<u32>,
    keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    InsertMany,
    BulkLoad,
    Online,
    /// Diagnostic: `bulk_load`, then `REINDEX INDEX` (`CONCURRENTLY` when true).
    Reindex(bool),
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::InsertMany => "insert_many",
            Side::BulkLoad => "bulk_load",
            Side::Online => "bulk_load online",
            Side::Reindex(false) => "bulk_load + REINDEX",
            Side::Reindex(true) => "bulk_load + REINDEX CONCURRENTLY",
        }
    }
}

pub(crate) const USAGE: &str = "\
reposmith-bench ingest [OPTIONS]  50k x 768 halfvec into a table with its HNSW index:
                    insert_many against bulk_load (exclusive, and online + rebuild)
  --rows N (50000), --dims N (768; one of 32, 64, 128, 384, 768, 1536),
  --queries N (100: recall sample), --sides LIST (insert_many,bulk_load,online;
                    diagnostics: reindex, reindex_concurrently: bulk_load, then REINDEX),
  --repeat N (runs of each side, 1), --workers N (bulk_load's parallel_workers),
  --clusters N (100: cluster centres; rows/N points around each),
  --hnsw \"m = 24, ef_construction = 128\" (the index's parameters instead of the derive's),
  --keep (leave bench_ingest), --quick (5000 rows x 128 dims)
";

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            rows: 50_000,
            dims: 768,
            queries: 100,
            sides: vec![Side::InsertMany, Side::BulkLoad, Side::Online],
            repeat: 1,
            clusters: CLUSTERS,
            hnsw: None,
            workers: None,
            keep: false,
        };
        let mut it = args.iter().filter(|a| *a != "ingest" && *a != "--");
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            let number = |v: &String| {
                v.parse::<usize>()
                    .map_err(|_| format!("{arg}: not a number: {v}"))
            };
            match arg.as_str() {
                "--rows" => o.rows = number(value()?)?.max(100),
                "--dims" => o.dims = number(value()?)?,
                "--queries" => o.queries = number(value()?)?.max(1),
                "--sides" => {
                    o.sides = value()?
                        .split(',')
                        .map(|s| match s {
                            "insert_many" => Ok(Side::InsertMany),
                            "bulk_load" => Ok(Side::BulkLoad),
                            "online" => Ok(Side::Online),
                            "reindex" => Ok(Side::Reindex(false)),
                            "reindex_concurrently" => Ok(Side::Reindex(true)),
                            other => Err(format!("unknown side {other}")),
                        })
                        .collect::<std::result::Result<_, _>>()?;
                }
                "--repeat" => o.repeat = number(value()?)?.max(1),
                "--clusters" => o.clusters = number(value()?)?.max(1),
                "--hnsw" => {
                    let with = value()?;
                    let ok = |c: char| c.is_ascii_alphanumeric() || " _=,".contains(c);
                    if !with.chars().all(ok) {
                        return Err(format!(
                            "--hnsw {with}: like \"m = 24, ef_construction = 128\""
                        )
                        .into());
                    }
                    o.hnsw = Some(with.clone());
                }
                "--workers" => o.workers = Some(u32::try_from(number(value()?)?)?),
                "--keep" => o.keep = true,
                "--quick" => (o.rows, o.dims, o.queries) = (5_000, 128, 50),
                other => return Err(format!("unknown option {other}\n\n{USAGE}").into()),
            }
        }
        Ok(o)
    }
}

/// Runs the ingest benchmark and prints its table.
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    match o.dims {
        32 => bench::<Doc32>(&o).await,
        64 => bench::<Doc64>(&o).await,
        128 => bench::<Doc128>(&o).await,
        384 => bench::<Doc384>(&o).await,
        768 => bench::<Doc768>(&o).await,
        1536 => bench::<Doc1536>(&o).await,
        other => Err(format!("--dims {other}: one of 32, 64, 128, 384, 768, 1536").into()),
    }
}

/// One side's numbers.
struct Measured {
    side: Side,
    secs: f64,
    recall: Vec<(u32, f64, f64)>,
    index_scan: bool,
    report: Option<LoadReport>,
}

async fn bench<D: IngestDoc>(o: &Options) -> Result<()> {
    let load_before = load_average();
    let started = Instant::now();
    let config = crate::vector::pg_config()?
        .max_connections(4)
        .statement_timeout(Some(Duration::from_secs(600)));
    let store = Store::connect(Config::new().with_postgres(config)).await?;
    let pg = store.postgres()?.clone();
    let raw = pg.pool().clone();
    let repo = store.postgres()?.repo::<D>();
    eprintln!(
        "  ingest: generating {} x {} and exact neighbours",
        o.rows,
        D::DIMS
    );
    let (rows, queries, truth) = data_set::<D>(o);
    let mut results = Vec::new();
    let runs = o
        .sides
        .iter()
        .flat_map(|&side| std::iter::repeat_n(side, o.repeat));
    for side in runs {
        reset::<D>(&pg, &raw, o.hnsw.as_deref()).await?;
        let at = Instant::now();
        let report = match side {
            Side::InsertMany => {
                for batch in rows.chunks(INSERT_BATCH) {
                    repo.insert_many(batch).await?;
                }
                None
            }
            Side::BulkLoad => Some(
                with_workers(repo.bulk_load(&rows), o)
                    .progress(printer(side))
                    .await?,
            ),
            Side::Online => Some(
                with_workers(repo.bulk_load(&rows), o)
                    .mode(LoadMode::Online)
                    .rebuild(Rebuild::Always)
                    .progress(printer(side))
                    .await?,
            ),
            Side::Reindex(concurrently) => {
                let report = with_workers(repo.bulk_load(&rows), o).await?;
                reindex(&raw, concurrently).await?;
                Some(report)
            }
        };
        let secs = at.elapsed().as_secs_f64();
        eprintln!("  {}: {secs:.1} s", side.name());
        check_ids(&raw, rows.len()).await?;
        let mut recall = Vec::new();
        for ef in EF_SEARCH {
            let mut sum = 0.0;
            let mut worst = 1.0f64;
            for (query, exact) in queries.iter().zip(&truth) {
                let ids = D::nearest(&repo, query.clone(), ef).await?;
                let found: Vec<usize> = ids.iter().map(|&id| id as usize - 1).collect();
                let r = data::recall(exact, &found);
                sum += r;
                worst = worst.min(r);
            }
            recall.push((ef, sum / truth.len() as f64, worst));
        }
        let index_scan = uses_index(&raw, &queries[0]).await?;
        results.push(Measured {
            side,
            secs,
            recall,
            index_scan,
            report,
        });
    }
    let settings = settings(&raw).await?;
    print(o, D::DIMS, &results, &settings, load_before, load_average());
    if !o.keep {
        sqlx::query("DROP TABLE IF EXISTS bench_ingest")
            .execute(&raw)
            .await?;
    }
    store.close().await;
    eprintln!("  ingest: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn with_workers<'r, D>(load: BulkLoad<'r, D>, o: &Options) -> BulkLoad<'r, D> {
    match o.workers {
        Some(n) => load.parallel_workers(n),
        None => load,
    }
}

/// The rows, the sample queries and their exact top-`K` (positions), all
/// from half-precision values, as the server holds them.
fn data_set<D: IngestDoc>(o: &Options) -> (Vec<D>, Vec<HalfVector>, Vec<Vec<usize>>) {
    let mut rng = SplitMix::new(SEED);
    let set = Clustered::new(D::DIMS, o.clusters, &mut rng);
    let mut exact = Exact::with_capacity(o.rows, D::DIMS);
    let rows: Vec<D> = (0..o.rows)
        .map(|_| {
            let half = HalfVector::from_f32_slice(&set.point(&mut rng));
            let stored = widen(&half);
            exact.extend(std::iter::once(stored.as_slice()));
            D::new(half)
        })
        .collect();
    let queries: Vec<HalfVector> = (0..o.queries)
        .map(|i| HalfVector::from_f32_slice(&set.query(i, 1_000_000 + i as u64)))
        .collect();
    let truth = queries
        .iter()
        .map(|q| exact.nearest(&widen(q), K as usize, |_| true))
        .collect();
    (rows, queries, truth)
}

fn widen(v: &HalfVector) -> Vec<f32> {
    v.to_vec().iter().map(|x| x.to_f32()).collect()
}

/// A fresh table as `create_tables` makes it, HNSW index included (with
/// `hnsw`'s parameters when given: bulk_load rebuilds what the catalog has).
async fn reset<D: IngestDoc>(pg: &PgBackend, raw: &PgPool, hnsw: Option<&str>) -> Result<()> {
    sqlx::query("DROP TABLE IF EXISTS bench_ingest")
        .execute(raw)
        .await?;
    pg.create_tables::<D>().await?;
    if let Some(with) = hnsw {
        let sql = format!(
            "DROP INDEX bench_ingest_embedding_idx; CREATE INDEX bench_ingest_embedding_idx \
             ON bench_ingest USING hnsw (embedding halfvec_cosine_ops) WITH ({with})"
        );
        // Safe: checked to hold only letters, digits, '_', '=', ',' and spaces.
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(raw).await?;
    }
    Ok(())
}

/// Prints phase changes and, every 10 s, the server's progress.
fn printer(side: Side) -> impl Fn(&LoadProgress) + Send + Sync + 'static {
    let last = Arc::new(Mutex::new((LoadPhase::Done, Instant::now())));
    move |p: &LoadProgress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.0 == p.phase && last.1.elapsed() < Duration::from_secs(10) {
            return;
        }
        *last = (p.phase, Instant::now());
        let build = p
            .build
            .as_ref()
            .map(|b| {
                format!(
                    ", {} (blocks {}/{}, tuples {}, workers {})",
                    b.server_phase, b.blocks_done, b.blocks_total, b.tuples_done, b.workers
                )
            })
            .unwrap_or_default();
        eprintln!(
            "    {} {:>6.1} s  {:?} {:?} {}/{} rows{}{build}",
            side.name(),
            p.elapsed.as_secs_f64(),
            p.mode,
            p.phase,
            p.rows_copied,
            p.rows_total,
            p.index
                .as_deref()
                .map(|i| format!(" {i}"))
                .unwrap_or_default(),
        );
    }
}

/// `REINDEX INDEX [CONCURRENTLY]` of the HNSW index with room for its graph.
async fn reindex(raw: &PgPool, concurrently: bool) -> Result<()> {
    let mut c = raw.acquire().await?;
    sqlx::raw_sql("SET maintenance_work_mem = '256MB'")
        .execute(&mut *c)
        .await?;
    let sql = match concurrently {
        true => "REINDEX INDEX CONCURRENTLY bench_ingest_embedding_idx",
        false => "REINDEX INDEX bench_ingest_embedding_idx",
    };
    sqlx::raw_sql(sql).execute(&mut *c).await?;
    sqlx::raw_sql("RESET maintenance_work_mem")
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Identity ids are positions + 1, as recall assumes.
async fn check_ids(raw: &PgPool, rows: usize) -> Result<()> {
    let (count, min, max): (i64, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT count(*), min(id), max(id) FROM bench_ingest")
            .fetch_one(raw)
            .await?;
    if (count, min, max) != (rows as i64, Some(1), Some(rows as i64)) {
        return Err(format!("bench_ingest holds {count} rows, ids {min:?}..{max:?}").into());
    }
    Ok(())
}

/// Whether the plan of a search is an HNSW index scan (else recall would
/// measure an exact scan).
async fn uses_index(raw: &PgPool, query: &HalfVector) -> Result<bool> {
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM bench_ingest ORDER BY embedding <=> $1 LIMIT 10",
    )
    .bind(query.clone())
    .fetch_all(raw)
    .await?;
    Ok(plan.iter().any(|line| line.contains("Index Scan")))
}

async fn settings(raw: &PgPool) -> Result<String> {
    let mut out = Vec::new();
    for name in [
        "maintenance_work_mem",
        "max_parallel_maintenance_workers",
        "max_parallel_workers",
        "shared_buffers",
    ] {
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(raw)
            .await?;
        out.push(format!("{name}={value}"));
    }
    Ok(out.join(", "))
}

/// `/proc/loadavg`'s three averages, or "?" elsewhere.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

fn print(
    o: &Options,
    dims: usize,
    results: &[Measured],
    settings: &str,
    before: String,
    after: String,
) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\ningest: {} x {dims} halfvec in {} clusters, HNSW cosine {}, \
         recall@{K} over {} queries; {cpus} CPUs, load average {before} before, {after} after",
        o.rows,
        o.clusters,
        o.hnsw.as_deref().unwrap_or("m = 16, ef_construction = 64"),
        o.queries
    );
    println!("server: {settings}\n");
    let base = results
        .iter()
        .find(|m| m.side == Side::InsertMany)
        .map(|m| m.secs);
    let header: Vec<String> = EF_SEARCH
        .iter()
        .map(|ef| format!(" recall@{K} ef {ef} (worst) |"))
        .collect();
    println!(
        "| path | wall s | rows/s | vs insert_many |{} index scan |",
        header.concat()
    );
    println!(
        "|---|---:|---:|---:|{}---|",
        "---:|".repeat(EF_SEARCH.len())
    );
    for m in results {
        let ratio = base.map_or("-".to_owned(), |b| format!("{:.2}", m.secs / b));
        let recall: Vec<String> = m
            .recall
            .iter()
            .map(|(_, mean, worst)| format!("{mean:.3} ({worst:.1})"))
            .collect();
        println!(
            "| {} | {:.1} | {:.0} | {ratio} | {} | {} |",
            m.side.name(),
            m.secs,
            o.rows as f64 / m.secs,
            recall.join(" | "),
            if m.index_scan { "yes" } else { "NO" },
        );
    }
    for m in results {
        let Some(r) = &m.report else { continue };
        println!(
            "\n{}: mode {:?}; check {:.1} s, copy {:.1} s, build {:.1} s, analyze {:.1} s, total {:.1} s",
            m.side.name(),
            r.mode,
            r.check_time.as_secs_f64(),
            r.copy_time.as_secs_f64(),
            r.build_time.as_secs_f64(),
            r.analyze_time.as_secs_f64(),
            r.total_time.as_secs_f64(),
        );
        for i in &r.indexes {
            println!(
                "  {} {:?}: {:.1} s, maintenance_work_mem {} MiB (estimated need {} MiB), \
                 max_parallel_maintenance_workers {} (seen {}), valid {}",
                i.name,
                i.outcome,
                i.build_time.as_secs_f64(),
                i.memory >> 20,
                i.memory_needed >> 20,
                i.parallel_workers,
                i.workers_seen,
                i.valid,
            );
        }
        for p in &r.problems {
            println!("  problem: {}: {}", p.step, p.error);
        }
    }
}
