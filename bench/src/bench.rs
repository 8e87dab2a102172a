//! The shared state of a run: the store, the raw pool, the seeded rows.

use std::str::FromStr;
use std::time::Duration;

use reposmith::postgres::sqlx::pool::PoolConnection;
use reposmith::postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use reposmith::postgres::sqlx::{PgPool, Postgres};
use reposmith::{Config, PgConfig, PgRepository, Repository, Store};
use uuid::Uuid;

use crate::Result;
use crate::args::Options;
use crate::item::{Item, TABLE};
use crate::measure::Series;
use crate::raw;

/// Who runs an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// `PgRepository` on the store's pool.
    Reposmith,
    /// `PgRepository` of a unit of work: one connection held for the round.
    ReposmithUnit,
    /// Raw sqlx on `&PgPool`: a pool round trip per operation.
    Raw,
    /// Raw sqlx on one connection held across operations.
    RawHeld,
    /// Raw UNNEST batches in one transaction.
    RawUnnest,
    /// Raw COPY FROM STDIN, CSV.
    RawCsv,
    /// Raw COPY FROM STDIN, binary.
    RawBinary,
    /// `pool.acquire()` and drop, no statement: the pool's own path.
    PoolCycle,
    /// `ping()` on the held connection: one bare round trip.
    HeldPing,
    /// A vector search through `PgRepository` without `ef_search`: one
    /// statement, no transaction (the server's default `ef_search`, 40).
    ReposmithNoKnobs,
    /// Raw sqlx with `BEGIN; SET LOCAL hnsw.ef_search = n` as one simple-query
    /// round trip instead of `BEGIN` then a prepared `set_config`.
    RawBatched,
    /// A repository on a backend with the Redis cache, every read a hit.
    CacheHit,
    /// The same with a near cache (L1) in front of Redis.
    CacheNear,
    /// The same repository with `.without_cache()`: the database every time.
    Uncached,
    /// The cached repository after its redis-server was killed.
    RedisKilled,
    /// The cached repository while its redis-server is paused (SIGSTOP).
    RedisPaused,
    /// A plain `HGET` of a cache entry's value through the same Redis
    /// connection: one round trip and the same bytes, no script, no decoding.
    RawRedis,
    /// The limits bench's baseline: a `redis_rate`-style single GCRA script.
    LimitRedisRate,
    /// `Limiter::check` of one requests-per-minute limit.
    LimitSingle,
    /// `Limiter::check` of requests + tokens per minute + a daily quota.
    LimitThree,
    /// The same and a concurrency limit, `check` only: its permit is not
    /// released but expires (a short lease), so the check is one call.
    LimitFourCheck,
    /// The same and a concurrency limit: `check`, then `release` its permit.
    LimitFour,
    /// governor's keyed limiter, in process.
    LimitGovernor,
    /// The replicas bench's baseline: a backend without replicas, every
    /// read on the primary.
    PrimaryOnly,
    /// A backend with the replica: pool reads routed to it.
    Routed,
    /// Insert, then get the row back with `on_primary()`.
    CommitPrimaryRead,
    /// Insert in a `Session`, then get the row in it: on the replica, after
    /// waiting for the commit to be replayed there.
    CommitSessionRead,
    /// Insert, then get the row routed without a session: on the replica,
    /// whether or not it has replayed the commit (may miss the row).
    CommitRoutedRead,
    /// The tenancy bench's baseline: the table owner's pool, the tenant
    /// condition written by hand, no row-level security.
    Unscoped,
    /// A `for_tenant` repository on the table owner: the scope's condition.
    TenantOwner,
    /// A `for_tenant` repository on an application role without
    /// BYPASSRLS: the scope's condition and the policy.
    TenantRls,
}

impl Side {
    /// The name in the table and on the child-process command line.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Side::Reposmith => "reposmith",
            Side::ReposmithUnit => "reposmith (unit of work)",
            Side::Raw => "raw sqlx (&pool)",
            Side::RawHeld => "raw sqlx (held conn)",
            Side::RawUnnest => "raw sqlx UNNEST",
            Side::RawCsv => "raw sqlx COPY csv",
            Side::RawBinary => "raw sqlx COPY binary",
            Side::PoolCycle => "acquire+drop, no query",
            Side::HeldPing => "ping on held conn",
            Side::ReposmithNoKnobs => "reposmith, no ef_search",
            Side::RawBatched => "raw, BEGIN+SET LOCAL in 1",
            Side::CacheHit => "reposmith, Redis hit",
            Side::CacheNear => "reposmith, near-cache hit",
            Side::Uncached => "reposmith, no cache",
            Side::RedisKilled => "reposmith, Redis killed",
            Side::RedisPaused => "reposmith, Redis paused",
            Side::RawRedis => "redis-rs HGET, same entry",
            Side::LimitRedisRate => "redis_rate-style GCRA",
            Side::LimitSingle => "reposmith 1 limit",
            Side::LimitThree => "reposmith 3 limits",
            Side::LimitFourCheck => "reposmith 4 limits",
            Side::LimitFour => "reposmith 4 + release",
            Side::LimitGovernor => "governor, in-process",
            Side::PrimaryOnly => "primary only",
            Side::Routed => "primary + replica (routed)",
            Side::CommitPrimaryRead => "get on_primary()",
            Side::CommitSessionRead => "get in the Session",
            Side::CommitRoutedRead => "get routed, no session",
            Side::Unscoped => "by hand, owner (no RLS)",
            Side::TenantOwner => "for_tenant, owner",
            Side::TenantRls => "for_tenant, app role (RLS)",
        }
    }
}

/// One workload's result: every side, and the one ratios are taken against.
#[derive(Debug)]
pub(crate) struct Table {
    /// What was measured.
    pub(crate) workload: String,
    /// What a unit is ("op" or "row").
    pub(crate) unit: &'static str,
    /// One series per side.
    pub(crate) series: Vec<Series<Side>>,
    /// Index in `series` of the baseline.
    pub(crate) baseline: usize,
}

/// Everything the workloads share.
pub(crate) struct Bench {
    pub(crate) opts: Options,
    pub(crate) store: Store,
    pub(crate) repo: PgRepository<Item>,
    /// The pool raw sqlx runs on.
    pub(crate) raw: PgPool,
    /// A connection taken from `raw` once and held: the no-pool path.
    pub(crate) held: PoolConnection<Postgres>,
    /// Ids of the seeded rows.
    pub(crate) ids: Vec<Uuid>,
    /// Rows the update workload rewrites, with their current versions.
    pub(crate) targets: Vec<Item>,
}

impl Bench {
    /// Connects, recreates the table from the schema and seeds it.
    pub(crate) async fn setup(opts: Options) -> Result<Bench> {
        let store = connect(None).await?;
        let raw = match opts.own_pool {
            true => own_pool(None)?,
            false => store.postgres()?.pool().clone(),
        };
        reset(&store).await?;
        let repo = store.postgres()?.repo::<Item>();
        let seed: Vec<Item> = (0..opts.seed_rows as u64)
            .map(|n| Item::new(n, opts.buckets()))
            .collect();
        repo.insert_many(&seed).await?;
        sqlx::query("ANALYZE bench_items").execute(&raw).await?;
        let mut held = raw.acquire().await?;
        let targets = raw::all(&mut *held, 1000).await?;
        let ids = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM {TABLE}")))
            .fetch_all(&mut *held)
            .await?;
        Ok(Bench {
            opts,
            store,
            repo,
            raw,
            held,
            ids,
            targets,
        })
    }
}

/// A store on `DATABASE_URL` with reposmith's defaults, or `max` connections.
pub(crate) async fn connect(max: Option<u32>) -> Result<Store> {
    let mut config = Config::from_env()?;
    if let Some(max) = max {
        let pg = config.postgres.take().ok_or("DATABASE_URL is not set")?;
        config = config.with_postgres(pg.max_connections(max));
    }
    Ok(Store::connect(config).await?)
}

/// Drops and recreates the bench table from the entity's schema.
pub(crate) async fn reset(store: &Store) -> Result<()> {
    let pg = store.postgres()?;
    sqlx::query("DROP TABLE IF EXISTS bench_items")
        .execute(pg.pool())
        .await?;
    pg.create_tables::<Item>().await?;
    Ok(())
}

/// A raw pool built the way reposmith builds its own, from `PgConfig`'s
/// defaults (`max` overrides the size), so only the code on top differs.
pub(crate) fn own_pool(max: Option<u32>) -> Result<PgPool> {
    let url = std::env::var("DATABASE_URL")?;
    let pg = PgConfig::new(url.clone());
    let timeout = pg.statement_timeout.unwrap_or(Duration::ZERO).as_millis();
    let options = PgConnectOptions::from_str(&url)?
        .application_name("reposmith-bench-raw")
        .statement_cache_capacity(pg.statement_cache_capacity)
        .options([("statement_timeout", timeout.to_string())]);
    // As reposmith's sessions start (`PgConfig::iterative_scan`), so filtered
    // vector searches take the same path on both sides.
    let options = match pg.iterative_scan {
        true => options.options([
            ("hnsw.iterative_scan", "relaxed_order"),
            ("ivfflat.iterative_scan", "relaxed_order"),
        ]),
        false => options,
    };
    let pool = PgPoolOptions::new()
        .max_connections(max.unwrap_or(pg.max_connections))
        .min_connections(pg.min_connections)
        .acquire_timeout(pg.acquire_timeout)
        .idle_timeout(pg.idle_timeout)
        .max_lifetime(pg.max_lifetime)
        .test_before_acquire(pg.test_before_acquire)
        .connect_lazy_with(options);
    Ok(pool)
}
