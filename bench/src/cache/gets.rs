//! Get by id: cached (Redis hit), uncached and raw sqlx, from one task and
//! from many; and the near cache's hit against the Redis hit.

use std::sync::Arc;
use std::time::Instant;

use reposmith::cache::Cache;
use reposmith::prelude::*;
use reposmith::{PgBackend, PgRepository, RedisBackend, RedisConnection};
use reposmith_core::cache::Keys;
use sqlx::PgPool;
use uuid::Uuid;

use super::entity::{CachedItem, raw_get};
use super::tally::{Notes, Tally};
use super::{Ctx, cache_options, found};
use crate::Result;
use crate::bench::{Side, Table};
use crate::measure::{Sample, Series, interleave, timed};

/// One side's way to get a row: a repository, raw sqlx on a pool, or a
/// plain `HGET` of the row's cache entry.
#[derive(Clone)]
pub(crate) enum Getter {
    Repo(PgRepository<CachedItem>),
    Raw(PgPool),
    Redis(RedisConnection, Keys),
}

impl Getter {
    /// `side`'s getter: `cached` for cache sides, its `.without_cache()`
    /// twin for [`Side::Uncached`], raw sqlx on `cached`'s pool for
    /// [`Side::Raw`]. Not for [`Side::RawRedis`] (see [`Getter::redis`]).
    pub(crate) fn of(side: Side, cached: &PgBackend) -> Getter {
        let repo = cached.repo::<CachedItem>();
        match side {
            Side::Raw => Getter::Raw(cached.pool().clone()),
            Side::Uncached => Getter::Repo(repo.without_cache()),
            _ => Getter::Repo(repo),
        }
    }

    /// `HGET <the row's entry> v` on `redis`' connection.
    pub(crate) fn redis(redis: &RedisBackend) -> Result<Getter> {
        let keys = Keys::of::<CachedItem>(&cache_options().prefix, "pg")
            .ok_or("CachedItem declares no cache")?;
        Ok(Getter::Redis(redis.connection(), keys))
    }

    /// Gets `id`, failing when the row (or its cache entry) is missing.
    pub(crate) async fn get(&self, id: Uuid) -> Result<()> {
        match self {
            Getter::Repo(repo) => found(repo.get(&id).await?),
            Getter::Raw(pool) => found(raw_get(pool, id).await?),
            Getter::Redis(conn, keys) => {
                let value: Option<Vec<u8>> = redis::cmd("HGET")
                    .arg(keys.row_of(&id))
                    .arg("v")
                    .query_async(&mut conn.clone())
                    .await?;
                match value {
                    Some(bytes) if !bytes.is_empty() => Ok(()),
                    _ => Err(format!("no cache entry for {id}").into()),
                }
            }
        }
    }
}

/// A table whose baseline is `base`.
pub(crate) fn table(workload: String, series: Vec<Series<Side>>, base: Side) -> Table {
    let baseline = series.iter().position(|s| s.side == base).unwrap_or(0);
    Table {
        workload,
        unit: "op",
        series,
        baseline,
    }
}

/// `ops` gets from one task on ids drawn from `keys`.
pub(crate) async fn one_task(
    getter: &Getter,
    keys: &[Uuid],
    ops: usize,
    round: usize,
) -> Result<Sample> {
    let mut rng = super::rng(round, 0);
    timed(ops, async |_| getter.get(keys[rng.below(keys.len())]).await).await
}

/// Fills the cache with every key (misses), so the rounds only hit.
async fn warm(cached: &PgBackend, keys: &[Uuid]) -> Result<()> {
    let getter = Getter::of(Side::CacheHit, cached);
    for &id in keys {
        getter.get(id).await?;
    }
    Ok(())
}

/// Interleaves `sides` getting from one task; `cache_of` says which cache
/// each side's counters come from.
async fn interleaved(
    ctx: &Ctx,
    sides: &[Side],
    tally: &mut Tally,
    getter_of: impl Fn(Side) -> (Getter, Option<Cache>),
) -> Result<Vec<Series<Side>>> {
    let (ops, keys, server) = (ctx.opts.ops, &ctx.keys, &ctx.server);
    interleave(sides, ctx.opts.rounds, async |side, round| {
        let (getter, cache) = getter_of(side);
        let before = Tally::before(cache.as_ref(), Some(server), round).await?;
        let sample = one_task(&getter, keys, ops, round).await?;
        tally
            .after(side, before, cache.as_ref(), Some(server), round, &sample)
            .await?;
        Ok(sample)
    })
    .await
}

/// Get by id from one task: Redis hit, no cache, raw sqlx (the
/// baseline), and a plain `HGET` of the same entries (a diagnostic: what
/// one Redis round trip for those bytes costs here).
pub(crate) async fn single(ctx: &Ctx, notes: &mut Notes) -> Result<Table> {
    warm(&ctx.cached, &ctx.keys).await?;
    let name = "get by id, 1 task";
    let mut tally = Tally::new(name, "gets");
    let sides = [Side::CacheHit, Side::Uncached, Side::Raw, Side::RawRedis];
    let hget = Getter::redis(&ctx.redis)?;
    let series = interleaved(ctx, &sides, &mut tally, |side| match side {
        Side::RawRedis => (hget.clone(), Some(ctx.cache.clone())),
        _ => (Getter::of(side, &ctx.cached), Some(ctx.cache.clone())),
    })
    .await?;
    notes.add(tally);
    Ok(table(name.to_owned(), series, Side::Raw))
}

/// Get by id from the near cache against the Redis hit (the baseline).
pub(crate) async fn near(ctx: &Ctx, notes: &mut Notes) -> Result<Table> {
    warm(&ctx.cached, &ctx.keys).await?;
    let name = "near cache: get by id, 1 task";
    let mut tally = Tally::new(name, "gets");
    let sides = [Side::CacheNear, Side::CacheHit];
    let series = interleaved(ctx, &sides, &mut tally, |side| match side {
        Side::CacheNear => (Getter::of(side, &ctx.near), Some(ctx.near_cache.clone())),
        _ => (Getter::of(side, &ctx.cached), Some(ctx.cache.clone())),
    })
    .await?;
    notes.add(tally);
    Ok(table(name.to_owned(), series, Side::CacheHit))
}

/// Get by id from `--tasks` tasks at once: Redis hit, no cache, raw sqlx
/// (the baseline), all on the backend's pool of `--pool`.
pub(crate) async fn concurrent(ctx: &Ctx, notes: &mut Notes) -> Result<Table> {
    warm(&ctx.cached, &ctx.keys).await?;
    let tasks = ctx.opts.tasks;
    let name = format!("get by id, {tasks} tasks, pool of {}", ctx.opts.pool);
    let mut tally = Tally::new(&name, "gets");
    let sides = [Side::CacheHit, Side::Uncached, Side::Raw];
    let per_task = (ctx.opts.ops * 2 / tasks).max(1);
    let keys = Arc::new(ctx.keys.clone());
    let (server, cache, cached) = (&ctx.server, &ctx.cache, &ctx.cached);
    let series = interleave(&sides, ctx.opts.rounds, async |side, round| {
        let getter = Getter::of(side, cached);
        let before = Tally::before(Some(cache), Some(server), round).await?;
        let sample = spread(&getter, tasks, per_task, &keys, round).await?;
        tally
            .after(side, before, Some(cache), Some(server), round, &sample)
            .await?;
        Ok(sample)
    })
    .await?;
    notes.add(tally);
    Ok(table(name, series, Side::Raw))
}

/// `tasks` tasks each getting `per_task` ids back to back; the sample's
/// wall time spans them all.
async fn spread(
    getter: &Getter,
    tasks: usize,
    per_task: usize,
    keys: &Arc<Vec<Uuid>>,
    round: usize,
) -> Result<Sample> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let (getter, keys) = (getter.clone(), Arc::clone(keys));
        let mut rng = super::rng(round, t + 1);
        // A plain loop: `timed`'s async closure is not provably `Send` for spawn.
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let (id, t) = (keys[rng.below(keys.len())], Instant::now());
                getter.get(id).await?;
                latencies.push(t.elapsed());
            }
            Result::<_>::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks * per_task);
    for handle in handles {
        latencies.extend(handle.await??);
    }
    let units = latencies.len() as u64;
    Ok(Sample {
        wall: start.elapsed(),
        latencies,
        units,
    })
}
