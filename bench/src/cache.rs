//! `cargo xtask bench cache`: the repository cache (issue 14) against the
//! database it stands in front of, sides interleaved in the same rounds
//! (see [`crate::measure`]).
//!
//! Workloads, each one table of the usual printer ([`crate::report`]):
//!
//! * **get by id, 1 task** and **get by id, 32 tasks**: a repository of a
//!   cached entity ([`entity::CachedItem`], `#[repo(cache(ttl = "10m"))]`)
//!   on a `PgBackend` with the Redis cache, every read a hit on a warm set
//!   of `--keys` ids; the same repository `.without_cache()`; raw sqlx
//!   `SELECT … WHERE id = $1` on the backend's sqlx pool (the baseline).
//!   All three draw the same ids, so Postgres' buffers are as warm for
//!   every side.
//! * **filtered vector top-10**: `search_embedding(v, 10).filter(shard =
//!   s).cached(ttl)` hits against the same search uncached (the baseline),
//!   on a table of seeded random vectors with an HNSW index ([`vectors`]).
//! * **near cache**: get by id through a second cache whose store has a
//!   near cache (L1, `reposmith-redis`' `near-cache`, default options: a
//!   1 s TTL), against the Redis hit (the baseline).
//! * **Redis killed** and **Redis paused**: a cache over a redis-server of
//!   its own that the bench kills (SIGKILL: the port refuses) or pauses
//!   (SIGSTOP: nothing answers, the response timeout decides); the first
//!   call's latency, then later calls against the uncached repository (the
//!   baseline) while the breaker skips Redis ([`down`]).
//!
//! Everything Redis runs on a redis-server the bench starts itself (as the
//! queue bench does), never the shared one; Postgres is `DATABASE_URL`, in
//! tables of this bench's own (`bench_cache_items`, `bench_cache_vectors`),
//! dropped at the end. The cache runs with `CacheOptions::default()`
//! (response timeout 50 ms, breaker after one failure, 1 s cooldown).
//!
//! Under the tables: per side, what the cache did in the measured rounds
//! (hits, misses, reads that bypassed Redis, errors), the Redis commands
//! per operation (`INFO commandstats`, zeroed before each side's round)
//! and the server's command time, then every target met or missed. The
//! load average is printed at the start and the end.

mod down;
mod entity;
mod gets;
mod tally;
mod targets;
mod vectors;

use std::time::{Duration, Instant};

use reposmith::cache::{Cache, CacheOptions};
use reposmith::{PgBackend, RedisBackend, RedisConfig};
use reposmith_redis::cache::NearCacheOptions;
use uuid::Uuid;

use crate::Result;
use crate::args::Flags;
use crate::bench::Table;
use crate::queue::server::Server;
use entity::CachedItem;
use tally::Notes;

/// What to run and how big.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Measured rounds per workload (after one warm-up round).
    pub(crate) rounds: usize,
    /// Gets per side per round (1 task); the 32-task workload runs twice as many.
    pub(crate) ops: usize,
    /// Rows of `bench_cache_items`.
    pub(crate) seed_rows: usize,
    /// The warm set: distinct ids the gets draw from.
    pub(crate) keys: usize,
    /// Tasks of the concurrent get.
    pub(crate) tasks: usize,
    /// Pool size of the backend (reposmith's default, 10).
    pub(crate) pool: u32,
    /// Rows of `bench_cache_vectors`.
    pub(crate) vector_rows: usize,
    /// Distinct (query vector, shard) searches cached and cycled.
    pub(crate) queries: usize,
    /// Searches per side per round.
    pub(crate) vector_ops: usize,
    /// Distinct values of the column the searches filter on (10: a filter
    /// keeps a tenth of the rows).
    pub(crate) shards: usize,
    /// Gets per first-call sample of the Redis-down workloads (fresh breakers).
    pub(crate) first_calls: usize,
    /// Workloads to run: get, concurrent, vector, near, down.
    pub(crate) only: Vec<String>,
}

/// Every workload's option name, in run order.
const WORKLOADS: [&str; 5] = ["get", "concurrent", "vector", "near", "down"];

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            rounds: 5,
            ops: 4000,
            seed_rows: 10_000,
            keys: 1000,
            tasks: 32,
            pool: 10,
            vector_rows: 20_000,
            queries: 100,
            vector_ops: 400,
            shards: 10,
            first_calls: 10,
            only: Vec::new(),
        };
        let mut flags = Flags::new(args, "cache");
        while let Some(flag) = flags.next_flag() {
            match flag {
                "--rounds" => o.rounds = flags.number(flag)?.max(1),
                "--ops" => o.ops = flags.number(flag)?.max(1),
                "--seed-rows" => o.seed_rows = flags.number(flag)?.max(100),
                "--keys" => o.keys = flags.number(flag)?.max(1),
                "--tasks" => o.tasks = flags.number(flag)?.max(1),
                "--pool" => o.pool = u32::try_from(flags.number(flag)?.max(1))?,
                "--vector-rows" => o.vector_rows = flags.number(flag)?.max(1000),
                "--queries" => o.queries = flags.number(flag)?.max(1),
                "--vector-ops" => o.vector_ops = flags.number(flag)?.max(1),
                "--shards" => o.shards = flags.number(flag)?.max(1),
                "--only" => o.only = flags.list(flag)?,
                "--quick" => {
                    (o.rounds, o.ops, o.seed_rows, o.keys) = (2, 500, 2000, 500);
                    (o.vector_rows, o.queries, o.vector_ops, o.first_calls) = (3000, 50, 100, 3);
                }
                other => return Err(format!("cache bench: unknown option {other}").into()),
            }
        }
        if let Some(bad) = o.only.iter().find(|w| !WORKLOADS.contains(&w.as_str())) {
            return Err(format!(
                "cache bench: --only {bad}: not one of {}",
                WORKLOADS.join(",")
            )
            .into());
        }
        o.keys = o.keys.min(o.seed_rows);
        Ok(o)
    }

    fn runs(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == workload)
    }
}

/// What the workloads share: the backends, the caches, the warm ids.
pub(crate) struct Ctx {
    pub(crate) opts: Options,
    /// The bench's own redis-server the caches use.
    pub(crate) server: Server,
    /// Postgres without a cache: seeding, and the raw side's sqlx pool.
    pub(crate) plain: PgBackend,
    /// The same pool with the Redis cache attached.
    pub(crate) cached: PgBackend,
    pub(crate) cache: Cache,
    /// The Redis backend the caches run on.
    pub(crate) redis: RedisBackend,
    /// The same pool with a cache whose store has a near cache.
    pub(crate) near: PgBackend,
    pub(crate) near_cache: Cache,
    /// The warm set.
    pub(crate) keys: Vec<Uuid>,
}

/// The cache's options: the defaults, under a prefix of the bench's own.
pub(crate) fn cache_options() -> CacheOptions {
    CacheOptions::default().prefix("reposmith-bench")
}

/// A backend connected to `url`.
pub(crate) async fn redis(url: &str) -> Result<RedisBackend> {
    Ok(RedisBackend::connect(&RedisConfig::new(url)).await?)
}

/// Runs the cache benchmark and prints its tables.
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let started = Instant::now();
    println!("load average at start: {}", crate::report::loadavg());
    let server = Server::start().await?;
    let pg_config = crate::vector::pg_config()?.max_connections(opts.pool);
    let plain = PgBackend::connect(&pg_config).await?;
    let redis = redis(&server.url).await?;
    let cache = redis.cache(cache_options())?;
    let near_store = redis
        .cache_store(&cache_options())
        .with_near_cache(NearCacheOptions::default())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !near_store.near_cache_live() {
        if Instant::now() > deadline {
            return Err("the near cache's subscriber did not subscribe within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let near_cache = Cache::new(std::sync::Arc::new(near_store), cache_options())?;
    let keys = entity::seed(&plain, opts.seed_rows, opts.keys).await?;
    println!(
        "reposmith-bench cache: {} rounds (+1 warm-up), {} gets per side per round over a warm \
         set of {} of {} rows, {} tasks on a pool of {}; own redis-server {} at {}; \
         CacheOptions::default() (response timeout {} ms)",
        opts.rounds,
        opts.ops,
        keys.len(),
        opts.seed_rows,
        opts.tasks,
        opts.pool,
        server.version().await?,
        server.url,
        cache.options().response_timeout.as_millis(),
    );
    let ctx = Ctx {
        cached: plain.clone().with_cache(cache.clone()),
        near: plain.clone().with_cache(near_cache.clone()),
        opts,
        server,
        plain,
        cache,
        redis,
        near_cache,
        keys,
    };
    let mut tables: Vec<Table> = Vec::new();
    let mut notes = Notes::default();
    let mut firsts = Vec::new();
    if ctx.opts.runs("get") {
        tables.push(step("get by id, 1 task", gets::single(&ctx, &mut notes)).await?);
    }
    if ctx.opts.runs("concurrent") {
        let work = gets::concurrent(&ctx, &mut notes);
        tables.push(step("get by id, concurrent", work).await?);
    }
    if ctx.opts.runs("vector") {
        tables.push(step("vector top-10", vectors::run(&ctx, &mut notes)).await?);
    }
    if ctx.opts.runs("near") {
        tables.push(step("near cache", gets::near(&ctx, &mut notes)).await?);
    }
    if ctx.opts.runs("down") {
        for how in [down::How::Killed, down::How::Paused] {
            let (table, first) = step(how.name(), down::run(&ctx, how, &mut notes)).await?;
            tables.push(table);
            firsts.push(first);
        }
    }
    crate::report::print_tables(&tables);
    notes.print();
    down::print_firsts(&firsts);
    targets::print(&tables, &firsts, ctx.cache.options().response_timeout);
    sqlx::query("DROP TABLE IF EXISTS bench_cache_items")
        .execute(ctx.plain.pool())
        .await?;
    ctx.plain.close().await;
    drop(ctx.server);
    println!("\nload average at end: {}", crate::report::loadavg());
    println!("cache bench: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs one workload and says on stderr how long it took.
async fn step<T>(name: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let done = work.await?;
    eprintln!("  {name}: {:.1} s", started.elapsed().as_secs_f64());
    Ok(done)
}

/// The id generator of task `task` in round `round` (the warm-up is
/// `usize::MAX`): distinct seeds, mixed, so no two tasks draw the same ids
/// (`Rng::new` ignores a seed's lowest bit, and nearby small seeds start
/// alike) and tasks do not share lookups more than chance makes them.
pub(crate) fn rng(round: usize, task: usize) -> crate::item::Rng {
    let n = (round as u64)
        .wrapping_mul(1 << 20)
        .wrapping_add(task as u64);
    crate::item::Rng::new(
        n.wrapping_mul(2)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

/// Fails unless a get found its row.
pub(crate) fn found(row: Option<CachedItem>) -> Result<()> {
    row.map(drop)
        .ok_or_else(|| "a seeded row is missing".into())
}
