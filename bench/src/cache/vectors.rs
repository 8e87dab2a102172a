//! A filtered vector top-10, cached (`.cached(ttl)`, every search a hit)
//! against the same search uncached (the baseline), from one task.
//!
//! The table `bench_cache_vectors`: `--vector-rows` seeded clustered
//! vectors of 384 dimensions (the vector bench's generator), a cosine HNSW
//! index (m = 16, ef_construction = 64) built after the load, and an
//! unindexed `shard` (`id % --shards`, default 10) the searches filter on
//! by equality, so a filter keeps a tenth of the rows (by default) and runs
//! on the HNSW index with iterative scans. `--queries` distinct (vector, shard) searches are
//! cached before the rounds and drawn at random; the table is dropped at
//! the end.

use std::time::Duration;

use reposmith::postgres::create_table_sql;
use reposmith::prelude::*;
use reposmith::{Entity, IndexMethod, PgRepository, Vector};
use reposmith_postgres::index_sql;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::Ctx;
use super::gets::table;
use super::tally::{Notes, Tally};
use crate::Result;
use crate::bench::{Side, Table};
use crate::measure::{interleave, timed};
use crate::vector::data::{Clustered, SplitMix};

/// A cached document chunk with its embedding.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_cache_vectors", cache(ttl = "10m"))]
pub(crate) struct CachedDoc {
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

const DIMS: usize = 384;
const K: u32 = 10;
const CLUSTERS: usize = 50;
const SEED: u64 = 14;
/// Rows per `insert_many` call.
const LOAD_BATCH: usize = 10_000;
/// How long a cached search lives: longer than the run.
const TTL: Duration = Duration::from_secs(600);

/// The filtered search, cached or not.
async fn search(
    repo: &PgRepository<CachedDoc>,
    (vector, shard): &(Vector, i32),
    cached: bool,
) -> Result<()> {
    let search = repo
        .search_embedding(vector.clone(), K)
        .filter(CachedDoc::SHARD.eq(*shard));
    let hits = match cached {
        true => search.cached(TTL).await?,
        false => search.await?,
    };
    match hits.len() == K as usize {
        true => Ok(()),
        false => Err(format!("the search returned {} rows, not {K}", hits.len()).into()),
    }
}

/// Loads the table, caches every query, runs the rounds, drops the table.
pub(crate) async fn run(ctx: &Ctx, notes: &mut Notes) -> Result<Table> {
    let rows = ctx.opts.vector_rows;
    let load = std::time::Instant::now();
    let queries = load_table(ctx, rows).await?;
    eprintln!(
        "  vector table: {rows} rows loaded and indexed in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    let repo = ctx.cached.repo::<CachedDoc>();
    for query in &queries {
        search(&repo, query, true).await?;
    }
    // One task, as the 1-task gets.
    let name = format!(
        "filtered top-10, {}k x {DIMS}, 1/{}",
        rows / 1000,
        ctx.opts.shards
    );
    let mut tally = Tally::new(&name, "searches");
    let sides = [Side::CacheHit, Side::Uncached];
    let ops = ctx.opts.vector_ops;
    let (cache, server, queries) = (&ctx.cache, &ctx.server, &queries);
    let series = interleave(&sides, ctx.opts.rounds, async |side, round| {
        let before = Tally::before(Some(cache), Some(server), round).await?;
        let cached = side == Side::CacheHit;
        let mut rng = super::rng(round, 0);
        let sample = timed(ops, async |_| {
            search(&repo, &queries[rng.below(queries.len())], cached).await
        })
        .await?;
        tally
            .after(side, before, Some(cache), Some(server), round, &sample)
            .await?;
        Ok(sample)
    })
    .await?;
    notes.add(tally);
    sqlx::query("DROP TABLE bench_cache_vectors")
        .execute(ctx.plain.pool())
        .await?;
    Ok(table(name, series, Side::Uncached))
}

/// Creates the table without its HNSW index, loads it, builds the index
/// on a session of its own; returns the queries.
async fn load_table(ctx: &Ctx, rows: usize) -> Result<Vec<(Vector, i32)>> {
    let schema = CachedDoc::SCHEMA;
    let hnsw: Vec<String> = schema
        .indexes
        .iter()
        .filter(|i| matches!(i.method, IndexMethod::Hnsw { .. }))
        .map(|i| index_sql(schema, i))
        .collect();
    let pool = ctx.plain.pool();
    sqlx::query("DROP TABLE IF EXISTS bench_cache_vectors")
        .execute(pool)
        .await?;
    for statement in create_table_sql(schema)
        .into_iter()
        .filter(|s| !hnsw.contains(s))
    {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(pool)
            .await?;
    }
    let shards = ctx.opts.shards;
    let mut rng = SplitMix::new(SEED);
    let set = Clustered::new(DIMS, CLUSTERS, &mut rng);
    // Through the backend without a cache: no invalidations to send.
    let repo = ctx.plain.repo::<CachedDoc>();
    let mut done = 0;
    while done < rows {
        let n = LOAD_BATCH.min(rows - done);
        let batch: Vec<CachedDoc> = (done..done + n)
            .map(|i| CachedDoc {
                id: 0,
                shard: ((i + 1) % shards) as i32,
                embedding: Vector::from(set.point(&mut rng)),
            })
            .collect();
        repo.insert_many(&batch).await?;
        done += n;
    }
    let url = std::env::var("DATABASE_URL")?;
    let mut session = PgConnection::connect(&url).await?;
    sqlx::raw_sql("SET maintenance_work_mem = '256MB'")
        .execute(&mut session)
        .await?;
    for statement in hnsw {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut session)
            .await?;
    }
    sqlx::raw_sql("ANALYZE bench_cache_vectors")
        .execute(&mut session)
        .await?;
    session.close().await?;
    Ok((0..ctx.opts.queries)
        .map(|i| {
            let v = Vector::from(set.query(i, 1_000_000 + i as u64));
            (v, (i % shards) as i32)
        })
        .collect())
}
