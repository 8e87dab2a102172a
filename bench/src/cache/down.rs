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
    /// How long bare `tokio::time::sleep`s of the response timeout took
    /// here, sorted (as many as first gets): timers fire on the tick after
    /// their deadline and then wait for a core, so this is what "waited the
    /// timeout" costs on this machine.
    pub(crate) bare_timeout: Vec<Duration>,
    /// Whether the very first get left the breaker open.
    pub(crate) opened: bool,
    /// Per first get: its latency, and that of an uncached get of the same
    /// id right after it (what its Postgres read alone costs). The very
    /// first get (the cache had been answering until then) comes first,
    /// then the first get of each cache built afterwards.
    pub(crate) samples: Vec<(Duration, Duration)>,
}

impl First {
    /// The sample whose wait on Redis (latency minus its read) was longest.
    pub(crate) fn worst(&self) -> (Duration, Duration) {
        let wait = |(total, read): &(Duration, Duration)| total.saturating_sub(*read);
        self.samples
            .iter()
            .copied()
            .max_by_key(wait)
            .unwrap_or_default()
    }
}

/// Times one get through `getter`, then an uncached get of the same id.
async fn first_get(
    getter: &Getter,
    uncached: &Getter,
    id: uuid::Uuid,
) -> Result<(Duration, Duration)> {
    let started = Instant::now();
    getter.get(id).await?;
    let total = started.elapsed();
    let started = Instant::now();
    uncached.get(id).await?;
    Ok((total, started.elapsed()))
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
    let mut bare_timeout = Vec::new();
    for _ in 0..=ctx.opts.first_calls {
        let started = Instant::now();
        tokio::time::sleep(cache.options().response_timeout).await;
        bare_timeout.push(started.elapsed());
    }
    bare_timeout.sort_unstable();
    let uncached = Getter::of(Side::Uncached, &pg);
    let mut samples = vec![first_get(&getter, &uncached, keys[0]).await?];
    let opened = cache.is_degraded();
    for i in 0..ctx.opts.first_calls {
        let pg = ctx.plain.clone().with_cache(redis.cache(cache_options())?);
        let getter = Getter::of(Side::CacheHit, &pg);
        samples.push(first_get(&getter, &uncached, keys[(i + 1) % keys.len()]).await?);
    }
    let name = format!("{}: get by id, 1 task", how.name());
    let mut tally = Tally::new(&name, "gets");
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
            bare_timeout,
            opened,
            samples,
        },
    ))
}

/// The first calls of each Redis-down workload.
pub(crate) fn print_firsts(firsts: &[First]) {
    if firsts.is_empty() {
        return;
    }
    println!(
        "\nfirst gets after the redis-server went down: latency (the uncached get of the same \
         id right after it)"
    );
    for f in firsts {
        let show = |(total, read): &(Duration, Duration)| format!("{} ({})", ms(*total), ms(*read));
        let (first, fresh) = match f.samples.split_first() {
            Some((first, fresh)) => (show(first), fresh),
            None => continue,
        };
        let fresh: Vec<String> = fresh.iter().map(show).collect();
        println!(
            "  {:<13} the first get {first}, breaker {} after it; the first get of each of {} \
             caches built afterwards: {}",
            f.how.name(),
            match f.opened {
                true => "open",
                false => "NOT open",
            },
            fresh.len(),
            fresh.join(", "),
        );
    }
}

/// Milliseconds with two decimals.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
