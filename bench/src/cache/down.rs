//! Redis down: a cache over a redis-server of its own, warmed (every key a
//! hit), then the server is killed (SIGKILL: the port refuses at once) or
//! paused (SIGSTOP: connections stay open and nothing answers, so the
//! response timeout, 50 ms, decides).
//!
//! Measured: the first get after that (the one that finds out and opens the
//! breaker), then the first get of `--first-calls` more caches built fresh
//! on the same Redis connection (closed breakers: more samples of a first
//! call), then interleaved rounds of gets through the cache whose breaker
//! is open against the same repository `.without_cache()` (the baseline):
//! what the open breaker costs. Its cooldown is 1 s, so about once a
//! second one read probes Redis again (a refused connect, or a 50 ms
//! timeout while paused); those probes are in the rounds' latencies.

use std::time::{Duration, Instant};

use super::gets::{Getter, one_task, table};
use super::tally::{Notes, Tally};
use super::{Ctx, cache_options, redis};
use crate::Result;
use crate::bench::{Side, Table};
use crate::measure::interleave;
use crate::queue::server::Server;

/// How the server goes down.
#[derive(Debug, Clone, Copy)]
pub(crate) enum How {
    Killed,
    Paused,
}

impl How {
    pub(crate) fn name(self) -> &'static str {
        match self {
            How::Killed => "Redis killed",
            How::Paused => "Redis paused",
        }
    }

    fn side(self) -> Side {
        match self {
            How::Killed => Side::RedisKilled,
            How::Paused => Side::RedisPaused,
        }
    }
}

/// The first calls after the server went down.
#[derive(Debug, Clone)]
pub(crate) struct First {
    pub(crate) how: How,
    /// The very first get (the cache had been answering until then).
    pub(crate) first: Duration,
    /// Whether that get left the breaker open.
    pub(crate) opened: bool,
    /// The first get of each cache built after the server went down.
    pub(crate) fresh: Vec<Duration>,
}

impl First {
    /// The slowest first call of all.
    pub(crate) fn worst(&self) -> Duration {
        self.fresh.iter().copied().fold(self.first, Duration::max)
    }
}

/// Runs one Redis-down workload: its table and its first calls.
pub(crate) async fn run(ctx: &Ctx, how: How, notes: &mut Notes) -> Result<(Table, First)> {
    let mut server = Server::start().await?;
    let redis = redis(&server.url).await?;
    let cache = redis.cache(cache_options())?;
    let pg = ctx.plain.clone().with_cache(cache.clone());
    let keys = &ctx.keys;
    let getter = Getter::of(Side::CacheHit, &pg);
    for &id in keys {
        getter.get(id).await?;
    }
    let hits = cache.stats().hits;
    for &id in keys {
        getter.get(id).await?;
    }
    if cache.stats().hits - hits != keys.len() as u64 {
        return Err(format!("{}: the warm cache did not hit every key", how.name()).into());
    }
    match how {
        How::Killed => server.kill()?,
        How::Paused => server.pause()?,
    }
    let started = Instant::now();
    getter.get(keys[0]).await?;
    let first = started.elapsed();
    let opened = cache.is_degraded();
    let mut fresh = Vec::with_capacity(ctx.opts.first_calls);
    for i in 0..ctx.opts.first_calls {
        let pg = ctx.plain.clone().with_cache(redis.cache(cache_options())?);
        let getter = Getter::of(Side::CacheHit, &pg);
        let started = Instant::now();
        getter.get(keys[(i + 1) % keys.len()]).await?;
        fresh.push(started.elapsed());
    }
    let name = format!("{}: get by id, 1 task", how.name());
    let mut tally = Tally::new(&name, "get");
    let sides = [how.side(), Side::Uncached];
    let ops = ctx.opts.ops;
    let series = interleave(&sides, ctx.opts.rounds, async |side, round| {
        let getter = Getter::of(side, &pg);
        let before = Tally::before(Some(&cache), None, round).await?;
        let sample = one_task(&getter, keys, ops, round).await?;
        tally
            .after(side, before, Some(&cache), None, round, &sample)
            .await?;
        Ok(sample)
    })
    .await?;
    notes.add(tally);
    drop(server);
    Ok((
        table(name, series, Side::Uncached),
        First {
            how,
            first,
            opened,
            fresh,
        },
    ))
}

/// The first calls of each Redis-down workload.
pub(crate) fn print_firsts(firsts: &[First]) {
    if firsts.is_empty() {
        return;
    }
    println!("\nfirst gets after the redis-server went down (each reads Postgres in the end)");
    for f in firsts {
        let mut fresh = f.fresh.clone();
        fresh.sort_unstable();
        let fresh = match fresh.as_slice() {
            [] => "none".to_owned(),
            all => format!(
                "{} of them: min {}, median {}, max {}",
                all.len(),
                ms(all[0]),
                ms(all[all.len() / 2]),
                ms(all[all.len() - 1])
            ),
        };
        println!(
            "  {:<14} first get {} (breaker {}); first gets of caches built afterwards: {fresh}",
            f.how.name(),
            ms(f.first),
            match f.opened {
                true => "open after it",
                false => "NOT open after it",
            },
        );
    }
}

/// Milliseconds with two decimals.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
