//! `insert_many` of many rows, against every raw bulk path, and the peak
//! memory of each in a child process of its own.

use std::process::Command;
use std::time::Instant;

use reposmith::{PgRepository, Repository};
use sqlx::PgPool;

use crate::Result;
use crate::bench::{Bench, Side, Table, connect};
use crate::bulk;
use crate::item::Item;
use crate::measure::{Sample, interleave};

const SIDES: [Side; 4] = [
    Side::Reposmith,
    Side::RawUnnest,
    Side::RawCsv,
    Side::RawBinary,
];

/// `bulk_rows` new rows into an empty table per side per round; the baseline
/// is the raw path with the highest median per-round rate.
pub(crate) async fn insert_many(b: &mut Bench) -> Result<Table> {
    let rows = b.opts.bulk_rows;
    let items: Vec<Item> = (0..rows as u64)
        .map(|n| Item::new(n, b.opts.buckets()))
        .collect();
    let series = interleave(&SIDES, b.opts.rounds, async |side, _| {
        // Every side starts from the same empty table; truncation is not timed.
        sqlx::query("TRUNCATE bench_items").execute(&b.raw).await?;
        let start = Instant::now();
        let stored = run(&b.repo, &b.raw, side, &items).await?;
        let wall = start.elapsed();
        if stored != rows as u64 {
            return Err(format!("{} stored {stored} of {rows} rows", side.label()).into());
        }
        Ok(Sample {
            wall,
            latencies: vec![wall],
            units: stored,
        })
    })
    .await?;
    let baseline = (1..series.len())
        .max_by(|&i, &j| series[i].median_rate().total_cmp(&series[j].median_rate()))
        .unwrap_or(0);
    let workload = format!("insert_many of {rows} rows");
    Ok(Table {
        workload,
        unit: "row",
        series,
        baseline,
    })
}

async fn run(repo: &PgRepository<Item>, raw: &PgPool, side: Side, items: &[Item]) -> Result<u64> {
    Ok(match side {
        Side::Reposmith => repo.insert_many(items).await?,
        Side::RawUnnest => bulk::unnest(raw, items).await?,
        Side::RawCsv => bulk::copy_csv(raw, items).await?,
        _ => bulk::copy_binary(raw, items).await?,
    })
}

/// Peak resident memory of one side's `insert_many`.
#[derive(Debug)]
pub(crate) struct Peak {
    /// Which side.
    pub(crate) side: Side,
    /// VmHWM of the child after the rows were built, before the insert (KiB).
    pub(crate) before_kib: u64,
    /// VmHWM of the child after the insert (KiB).
    pub(crate) after_kib: u64,
}

/// Runs each side's `insert_many` in a fresh child process (this binary with
/// `--memory-child`): an allocator that already grew in this process for
/// earlier workloads would hide what the insert itself needs.
pub(crate) fn peaks(b: &Bench) -> Result<Vec<Peak>> {
    let exe = std::env::current_exe()?;
    let rows = b.opts.bulk_rows.to_string();
    let mut peaks = Vec::new();
    for side in SIDES {
        let out = Command::new(&exe)
            .args(["--bulk-rows", &rows, "--memory-child", side.label()])
            .output()?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("memory child for {} failed: {err}", side.label()).into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut numbers = text.split_whitespace().filter_map(|w| w.parse().ok());
        let (Some(before_kib), Some(after_kib)) = (numbers.next(), numbers.next()) else {
            return Err(format!("memory child for {} printed {text:?}", side.label()).into());
        };
        peaks.push(Peak {
            side,
            before_kib,
            after_kib,
        });
    }
    Ok(peaks)
}

/// The child's half: build the rows, read VmHWM, insert, read VmHWM, print both.
pub(crate) async fn child(rows: usize, label: &str) -> Result<()> {
    let side = SIDES
        .into_iter()
        .find(|s| s.label() == label)
        .ok_or_else(|| format!("no side named {label}"))?;
    let store = connect(None).await?;
    let (repo, raw) = (
        store.postgres()?.repo::<Item>(),
        store.postgres()?.pool().clone(),
    );
    let items: Vec<Item> = (0..rows as u64).map(|n| Item::new(n, 1000)).collect();
    sqlx::query("TRUNCATE bench_items").execute(&raw).await?;
    let before = high_water_kib()?;
    let stored = run(&repo, &raw, side, &items).await?;
    let after = high_water_kib()?;
    drop(items);
    println!("{before} {after} {stored}");
    Ok(())
}

/// VmHWM from /proc/self/status: the peak resident set so far, in KiB.
fn high_water_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    let kib = line.trim().trim_end_matches("kB").trim();
    Ok(kib.parse()?)
}
