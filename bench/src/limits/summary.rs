//! What the limits bench prints under its tables: the ratios issue 15 asks
//! for, what each side cost the server per decision, and the targets.

use std::time::Duration;

use super::Totals;
use crate::bench::{Side, Table};
use crate::measure::Series;

/// The pairs compared: (numerator, denominator, what it says).
const PAIRS: [(Side, Side, &str); 5] = [
    (
        Side::LimitFourCheck,
        Side::LimitSingle,
        "4 limits, one check / 1 limit",
    ),
    (
        Side::LimitFour,
        Side::LimitSingle,
        "4 limits + release / 1 limit",
    ),
    (
        Side::LimitThree,
        Side::LimitSingle,
        "3 limits / 1 limit (like for like)",
    ),
    (
        Side::LimitSingle,
        Side::LimitRedisRate,
        "reposmith 1 limit / redis_rate",
    ),
    (
        Side::LimitGovernor,
        Side::LimitSingle,
        "governor / reposmith 1 limit",
    ),
];

/// Prints the ratios, the per-decision costs and the targets.
pub(crate) fn print(tables: &[Table], totals: &[Vec<(Side, Totals)>]) {
    println!(
        "\nlegend: 1 limit = rpm; 3 limits = rpm+tpm+daily quota, check only (one script call);"
    );
    println!(
        "        4 limits = rpm+tpm+inflight+daily, one check (its permit expires, 100 ms lease);\n        \
         4 + release = the same, check then release of the permit (two calls)"
    );
    println!("\nratios, median of per-round ratios [min..max] (latency: p50 or p99 of each round)");
    for table in tables {
        println!("  {}:", table.workload);
        for (a, b, what) in PAIRS {
            let (Some(a), Some(b)) = (series(table, a), series(table, b)) else {
                continue;
            };
            let (rate, rmin, rmax) = a.ratio_to(b);
            if a.side == Side::LimitGovernor {
                // Sub-µs latencies against a round trip say nothing more.
                println!("    {what:<36} rate {rate:.2} [{rmin:.2}..{rmax:.2}]");
                continue;
            }
            println!(
                "    {what:<36} p50 {}  p99 {}  rate {rate:.2} [{rmin:.2}..{rmax:.2}]",
                latency_ratio(a, b, 0.5),
                latency_ratio(a, b, 0.99),
            );
        }
    }
    println!(
        "\nper decision over the measured rounds (client: CPU of the client processes; \
         server: INFO commandstats, CPU of redis-server)"
    );
    for (table, sides) in tables.iter().zip(totals) {
        println!("  {}:", table.workload);
        for (side, t) in sides {
            println!("    {:<24} {}", side.label(), cost(t));
        }
    }
    targets(tables);
}

fn series(table: &Table, side: Side) -> Option<&Series<Side>> {
    table.series.iter().find(|s| s.side == side)
}

/// Median [min..max] over rounds of a's `q` latency over b's.
fn latency_ratio(a: &Series<Side>, b: &Series<Side>, q: f64) -> String {
    let (median, min, max) = a.latency_ratio_to(b, q);
    format!("{median:.2} [{min:.2}..{max:.2}]")
}

/// Admissions, denials, failures, commands and server time per decision.
fn cost(t: &Totals) -> String {
    let c = &t.counts;
    let decisions = (c.admitted + c.denied).max(1) as f64;
    let skip = |name: &str| matches!(name, "info" | "config" | "flushall");
    let mut commands: Vec<String> = t
        .calls
        .iter()
        .filter(|(name, n)| !skip(name) && **n as f64 / decisions >= 0.01)
        .map(|(name, n)| format!("{name} {:.2}", *n as f64 / decisions))
        .collect();
    if commands.is_empty() {
        commands.push("no server commands".to_owned());
    }
    format!(
        "admitted {:.2}% ({} denied, {} store failures); client CPU {:.1} µs; {}; redis-server \
         {:.1} µs in commands, {:.1} µs CPU",
        100.0 * c.admitted as f64 / decisions,
        c.denied,
        c.failures,
        c.cpu_us as f64 / decisions,
        commands.join(", "),
        t.command_us as f64 / decisions,
        t.cpu_s * 1e6 / decisions,
    )
}

fn verdict(ok: bool) -> &'static str {
    match ok {
        true => "met",
        false => "MISSED",
    }
}

/// Issue 15's targets for every reposmith side in every table.
fn targets(tables: &[Table]) {
    println!("\ntargets (issue 15), reposmith sides:");
    let reposmith = [
        Side::LimitSingle,
        Side::LimitThree,
        Side::LimitFourCheck,
        Side::LimitFour,
    ];
    for table in tables {
        println!("  {}:", table.workload);
        for s in reposmith.iter().filter_map(|&side| series(table, side)) {
            let (rate, p99) = (s.rate(), s.latency(0.99));
            println!(
                "    {:<24} {:>7.0} decisions/s >= 10,000: {:<6}  p99 {:>7.0} µs <= 1 ms: {}",
                s.side.label(),
                rate,
                verdict(rate >= 10_000.0),
                p99.as_secs_f64() * 1e6,
                verdict(p99 <= Duration::from_millis(1)),
            );
        }
        let single = series(table, Side::LimitSingle);
        for side in [Side::LimitThree, Side::LimitFourCheck, Side::LimitFour] {
            let (Some(multi), Some(single)) = (series(table, side), single) else {
                continue;
            };
            let (p50, ..) = multi.latency_ratio_to(single, 0.5);
            let (p99, ..) = multi.latency_ratio_to(single, 0.99);
            println!(
                "    {:<24} latency / 1 limit <= 1.5: p50 {p50:.2} {}, p99 {p99:.2} {}",
                side.label(),
                verdict(p50 <= 1.5),
                verdict(p99 <= 1.5),
            );
        }
    }
}
