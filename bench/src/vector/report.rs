//! The vector benchmark's table and its verdict on the targets.

use std::time::Duration;

use super::{Case, CaseResult, K, Setup, setup};
use crate::args::Options;
use crate::bench::Side;

/// "top-10, ef_search 40, 1% filter".
pub(crate) fn case_name(case: Case) -> String {
    let filter = if case.filtered { ", 1% filter" } else { "" };
    format!("top-{K}, ef_search {}{filter}", case.ef)
}

/// Prints the setup, one block per case and the targets.
pub(crate) fn print(setup: &Setup, results: &[CaseResult], tasks: usize, opts: &Options) {
    println!(
        "\nvector search: {} x 384 rows, cosine; load (insert_many, COPY) {:.1} s = {:.0} rows/s",
        setup.rows,
        setup.load_secs,
        setup.rows as f64 / setup.load_secs.max(1e-9),
    );
    println!(
        "HNSW build {:.1} s with maintenance_work_mem={}: {}",
        setup.build_secs,
        setup::MAINTENANCE_WORK_MEM,
        setup.index_sql
    );
    println!("server: {}", setup.settings);
    println!(
        "searches: {tasks} tasks, {} rounds (+1 warm-up) of {} searches per side; recall@{K} of \
         the first {} queries against exact cosine neighbours (computed in {:.1} s)",
        opts.vector_rounds,
        (opts.vector_ops / tasks).max(1) * tasks,
        super::SAMPLE,
        setup.exact_secs,
    );
    println!(
        "\n{:<34} {:<24} {:>7} {:>9} {:>9} {:>7} {:>5} {:>8}  {:<22} p50 ratio",
        "case", "side", "QPS", "p50", "p99", "recall", "rows", "cpu/op", "QPS ratio [min..max]"
    );
    println!("{}", "-".repeat(142));
    for r in results {
        print_case(r);
    }
    println!(
        "\nrows: fewest rows any search returned; cpu/op: this process's CPU time (all threads) \
         per timed search; ratios are against raw sqlx (&pool): QPS is the \
         median of per-round ratios, p50 ratio is raw p50 / this p50 (above 1 = faster)"
    );
    print_targets(results);
}

fn print_case(r: &CaseResult) {
    let base = &r.series[1];
    for (i, series) in r.series.iter().enumerate() {
        let name = match i {
            0 => case_name(r.case),
            1 => format!("  plan: {}", short(&r.plan)),
            _ => String::new(),
        };
        let (qps_ratio, p50_ratio) = match i {
            1 => ("1.00 (baseline)".to_owned(), String::new()),
            _ => {
                let (median, min, max) = series.ratio_to(base);
                (
                    format!("{median:.3} [{min:.2}..{max:.2}]"),
                    format!("{:.3}", p50_ratio(series, base)),
                )
            }
        };
        println!(
            "{name:<34} {:<24} {:>7.0} {:>9} {:>9} {:>7.3} {:>5} {:>5.0} µs  {qps_ratio:<22} {p50_ratio}",
            label(series.side),
            series.rate(),
            duration(series.latency(0.5)),
            duration(series.latency(0.99)),
            r.recall[i],
            r.fewest[i],
            r.cpu_us[i],
        );
    }
}

fn p50_ratio(series: &crate::measure::Series<Side>, base: &crate::measure::Series<Side>) -> f64 {
    base.latency(0.5).as_secs_f64() / series.latency(0.5).as_secs_f64().max(1e-12)
}

fn label(side: Side) -> &'static str {
    match side {
        Side::RawHeld => "raw sqlx (held/task)",
        other => other.label(),
    }
}

/// The scan node in a few words.
fn short(plan: &str) -> String {
    let what = if plan.contains("Index Scan") && plan.contains("embedding_idx") {
        "HNSW index scan"
    } else if plan.contains("Seq Scan") {
        "seq scan (exact)"
    } else {
        plan
    };
    what.chars().take(24).collect()
}

/// The targets, each met or missed, for reposmith's side.
fn print_targets(results: &[CaseResult]) {
    println!("\ntargets (reposmith):");
    for r in results {
        let repo = &r.series[0];
        let (qps, _, _) = repo.ratio_to(&r.series[1]);
        let p50 = p50_ratio(repo, &r.series[1]);
        let mut checks = vec![
            check(&format!("QPS ratio {qps:.3} >= 0.95"), qps >= 0.95),
            check(&format!("p50 ratio {p50:.3} >= 0.95"), p50 >= 0.95),
        ];
        let recall = r.recall[0];
        match (r.case.filtered, r.case.ef) {
            (false, 100) => checks.push(check(
                &format!("recall {recall:.3} >= 0.95"),
                recall >= 0.95,
            )),
            (true, _) => {
                checks.push(check(&format!("recall {recall:.3} >= 0.9"), recall >= 0.9));
                let rows = r.fewest[0];
                checks.push(check(&format!("rows {rows} = {K}"), rows == K as usize));
            }
            _ => {}
        }
        println!("  {:<34} {}", case_name(r.case), checks.join(", "));
    }
}

fn check(what: &str, ok: bool) -> String {
    format!("{what} {}", if ok { "met" } else { "MISSED" })
}

/// Microseconds below 10 ms, milliseconds above.
fn duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 10_000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.1} ms", micros / 1000.0)
    }
}
