//! Issue 14's targets, each met or missed, from the tables' numbers.

use std::time::Duration;

use super::down::{First, How, ms};
use crate::bench::{Side, Table};
use crate::measure::Series;

/// The series of `side` in the table whose name starts with `workload`.
fn series<'a>(tables: &'a [Table], workload: &str, side: Side) -> Option<&'a Series<Side>> {
    tables
        .iter()
        .filter(|t| t.workload.starts_with(workload))
        .flat_map(|t| &t.series)
        .find(|s| s.side == side)
}

fn verdict(ok: bool) -> &'static str {
    match ok {
        true => "met",
        false => "MISSED",
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Prints every target whose workload ran.
pub(crate) fn print(tables: &[Table], firsts: &[First], timeout: Duration) {
    println!("\ntargets:");
    if let Some(hit) = series(tables, "get by id, 1 task", Side::CacheHit) {
        let p50 = hit.latency(0.5);
        let ok = p50 <= Duration::from_micros(100);
        println!("  Redis hit p50 {} <= 100 µs: {}", micros(p50), verdict(ok));
    }
    let get_by = |w: &str| {
        let raw = series(tables, w, Side::Raw)?;
        let uncached = series(tables, w, Side::Uncached)?;
        let hit = series(tables, w, Side::CacheHit)?;
        Some((hit.ratio_to(raw).0, hit.ratio_to(uncached).0))
    };
    if let Some((to_raw, to_uncached)) = tables
        .iter()
        .find(|t| t.workload.starts_with("get by id, ") && !t.workload.contains("1 task"))
        .and_then(|t| get_by(&t.workload).map(|r| (t.workload.clone(), r)))
        .map(|(w, r)| {
            println!("  {w}:");
            r
        })
    {
        println!(
            "    cached / raw sqlx get-by-id throughput {to_raw:.2} >= 2: {} \
             (cached / reposmith uncached {to_uncached:.2})",
            verdict(to_raw >= 2.0)
        );
    }
    if let (Some(hit), Some(uncached)) = (
        series(tables, "filtered top-10", Side::CacheHit),
        series(tables, "filtered top-10", Side::Uncached),
    ) {
        let ratio = hit.ratio_to(uncached).0;
        println!(
            "  filtered vector top-10: cached hit / uncached search throughput {ratio:.1} >= 10: {}",
            verdict(ratio >= 10.0)
        );
    }
    if let Some(near) = series(tables, "near cache", Side::CacheNear) {
        let p50 = near.latency(0.5);
        println!(
            "  near-cache hit p50 {} <= 5 µs: {}",
            micros(p50),
            verdict(p50 <= Duration::from_micros(5))
        );
    }
    for first in firsts {
        let name = first.how.name();
        let (Some(down), Some(uncached)) = (
            series(
                tables,
                name,
                match first.how {
                    How::Killed => Side::RedisKilled,
                    How::Paused => Side::RedisPaused,
                },
            ),
            series(tables, name, Side::Uncached),
        ) else {
            continue;
        };
        println!("  {name}:");
        let (total, read) = first.worst();
        let wait = total.saturating_sub(read);
        let bare = &first.bare_timeout;
        let (bare_median, bare_max) = match bare.as_slice() {
            [] => (Duration::ZERO, Duration::ZERO),
            all => (all[all.len() / 2], all[all.len() - 1]),
        };
        println!(
            "    first get, the longest wait of {}: {} = {} in the cache + {} (its Postgres \
             read, timed right after); wait <= the {} response timeout: {} (over by {}; a bare \
             tokio sleep of {} took {} median, {} max here)",
            first.samples.len(),
            ms(total),
            ms(wait),
            ms(read),
            ms(timeout),
            verdict(wait <= timeout),
            ms(wait.saturating_sub(timeout)),
            ms(timeout),
            ms(bare_median),
            ms(bare_max),
        );
        let p50 = down.latency(0.5).as_secs_f64() - uncached.latency(0.5).as_secs_f64();
        let mean = 1.0 / down.rate() - 1.0 / uncached.rate();
        let p99 = down.latency(0.99).as_secs_f64() - uncached.latency(0.99).as_secs_f64();
        let ok = p50 <= 1e-3 && mean <= 1e-3;
        println!(
            "    later gets, extra over uncached: p50 {:+.1} µs, mean {:+.1} µs (p99 {:+.1} µs) \
             <= 1 ms: {}",
            p50 * 1e6,
            mean * 1e6,
            p99 * 1e6,
            verdict(ok)
        );
    }
}
