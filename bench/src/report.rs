//! The printed table.

use std::time::Duration;

use crate::bench::Table;
use crate::heavy::Peak;

/// Prints every workload: rate, p50/p99 and the median per-round ratio to the baseline.
pub(crate) fn print_tables(tables: &[Table]) {
    println!(
        "\n{:<38} {:<26} {:>12} {:>10} {:>10}  ratio to baseline: median [min..max] of rounds",
        "workload", "side", "rate", "p50", "p99"
    );
    println!("{}", "-".repeat(140));
    for table in tables {
        let base = &table.series[table.baseline];
        for (i, series) in table.series.iter().enumerate() {
            let name = if i == 0 { table.workload.as_str() } else { "" };
            let ratio = if i == table.baseline {
                "1.00 (baseline)".to_owned()
            } else {
                let (median, min, max) = series.ratio_to(base);
                format!("{median:.2} [{min:.2}..{max:.2}]")
            };
            println!(
                "{name:<38} {:<26} {:>8.0} {}/s {:>10} {:>10}  {ratio}",
                series.side.label(),
                series.rate(),
                table.unit,
                duration(series.latency(0.5)),
                duration(series.latency(0.99)),
            );
        }
    }
}

/// Prints peak memory per side and its ratio to the smallest raw peak.
pub(crate) fn print_peaks(rows: usize, peaks: &[Peak]) {
    println!("\npeak memory of insert_many of {rows} rows (VmHWM of a fresh child process)");
    println!(
        "{:<26} {:>14} {:>14} {:>16}  peak ÷ best raw peak",
        "side", "rows built", "peak", "added by insert"
    );
    let best = peaks[1..]
        .iter()
        .map(|p| p.after_kib)
        .min()
        .unwrap_or(1)
        .max(1);
    for p in peaks {
        println!(
            "{:<26} {:>10.1} MiB {:>10.1} MiB {:>12.1} MiB  {:.2}",
            p.side.label(),
            mib(p.before_kib),
            mib(p.after_kib),
            mib(p.after_kib.saturating_sub(p.before_kib)),
            p.after_kib as f64 / best as f64,
        );
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Microseconds below 10 ms, milliseconds above.
pub(crate) fn duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 10_000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.1} ms", micros / 1000.0)
    }
}

/// The load average line of `/proc/loadavg`, printed at the start and the
/// end of the areas that run on the shared machine.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
