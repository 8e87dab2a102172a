//! Read-your-writes: what a read of one's own fresh write costs. Each of
//! `--ryw-tasks` tasks inserts a row, then gets it back by id, for
//! `--ryw-seconds` per side per round, all sides on the routed backend:
//!
//! * `get on_primary()` (the baseline): the read pinned to the primary.
//! * `get in the Session`: insert and get in the task's own `Session`; the
//!   insert records its commit's WAL position (one more round trip on the
//!   primary) and the get waits on the replica until it has replayed it.
//! * `get routed, no session`: the get goes to the replica whether or not
//!   it has replayed the insert yet (a diagnostic: the misses it counts are
//!   what the session's wait prevents).
//!
//! The table's latencies are the get's alone; its rate is insert + get
//! pairs. Each session read's wait is the `reposmith.waited_us` its
//! `reposmith.query` span records (a tracing layer on these tasks only,
//! [`Waits`]), zero for a read that did not wait; `read_stats()` deltas
//! say where the reads ran and sum the same waits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reposmith::PgBackend;
use reposmith::postgres::{ReadStats, Session};
use reposmith::prelude::*;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

use super::Options;
use super::data::{self, Data, ReplicaDoc};
use super::reads::{add, delta};
use crate::Result;
use crate::bench::{Side, Table};
use crate::measure::{Sample, Series, interleave, quantile};
use crate::report::duration;
use crate::vector::data::SplitMix;

/// The sides, the baseline first.
const SIDES: [Side; 3] = [
    Side::CommitPrimaryRead,
    Side::CommitSessionRead,
    Side::CommitRoutedRead,
];

/// What one side did over its measured rounds, besides the table's sample.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    /// Gets, and those that did not find the row just inserted.
    reads: u64,
    missing: u64,
    /// Every insert's latency.
    inserts: Vec<Duration>,
    /// Every session read's wait on the replica (zero when it had none).
    waits: Vec<Duration>,
    /// Where the reads ran (`read_stats()` deltas).
    stats: ReadStats,
}

/// A tracing layer keeping every `reposmith.waited_us` recorded on a span.
#[derive(Clone, Default)]
struct Waits(Arc<Mutex<Vec<u64>>>);

impl Waits {
    /// The waits recorded since the last call, in µs.
    fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl tracing::field::Visit for Waits {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "reposmith.waited_us" {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(value);
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Waits {
    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        values.record(&mut self.clone());
    }
}

/// One task's round: its gets' latencies, its inserts' and its misses.
type TaskRun = (Vec<Duration>, Vec<Duration>, u64);

/// One task inserting and getting back for `length` as `side` does.
async fn task(
    pg: PgBackend,
    data: Data,
    side: Side,
    until: Instant,
    mut rng: SplitMix,
) -> Result<TaskRun> {
    let session = Session::new();
    let repo = pg.repo::<ReplicaDoc>();
    let (writer, reader) = match side {
        Side::CommitPrimaryRead => (repo.clone(), repo.on_primary()),
        Side::CommitSessionRead => (repo.clone().in_session(&session), repo.in_session(&session)),
        _ => (repo.clone(), repo),
    };
    let (mut gets, mut inserts, mut missing) = (Vec::new(), Vec::new(), 0);
    while Instant::now() < until {
        let embedding = data.fresh[rng.below(data.fresh.len())].clone();
        let row = data::doc(embedding, &mut rng);
        let at = Instant::now();
        let saved = writer.insert(&row).await?;
        inserts.push(at.elapsed());
        let at = Instant::now();
        let found = reader.get(&saved.id).await?;
        gets.push(at.elapsed());
        missing += u64::from(found.is_none());
    }
    Ok((gets, inserts, missing))
}

/// `tasks` tasks of `side` for `length`, under `dispatch` (the [`Waits`]
/// layer); the sample is the gets', its units the pairs.
async fn round_of(
    o: &Options,
    pg: &PgBackend,
    data: &Data,
    side: Side,
    round: usize,
    dispatch: &tracing::Dispatch,
) -> Result<(Sample, Notes)> {
    let start = Instant::now();
    let until = start + o.ryw_seconds;
    let mut handles = Vec::with_capacity(o.ryw_tasks);
    for t in 0..o.ryw_tasks {
        let seed = ((round as u64) << 20 | t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let work = task(pg.clone(), data.clone(), side, until, SplitMix::new(seed));
        handles.push(tokio::spawn(work.with_subscriber(dispatch.clone())));
    }
    let (mut latencies, mut notes) = (Vec::new(), Notes::default());
    for handle in handles {
        let (gets, inserts, missing) = handle.await??;
        latencies.extend(gets);
        notes.inserts.extend(inserts);
        notes.missing += missing;
    }
    notes.reads = latencies.len() as u64;
    let sample = Sample {
        wall: start.elapsed(),
        units: notes.reads,
        latencies,
    };
    Ok((sample, notes))
}

/// The interleaved rounds; returns the table and each side's notes.
pub(crate) async fn run(
    o: &Options,
    routed: &PgBackend,
    data: &Data,
) -> Result<(Table, Vec<(Side, Notes)>)> {
    let waits = Waits::default();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(waits.clone()));
    let mut notes: Vec<(Side, Notes)> = SIDES.iter().map(|&s| (s, Notes::default())).collect();
    let series = interleave(&SIDES, o.ryw_rounds, async |side, round| {
        waits.take();
        let before = routed.read_stats();
        let (sample, mut got) = round_of(o, routed, data, side, round, &dispatch).await?;
        got.stats = delta(before, routed.read_stats());
        let recorded = waits.take();
        if round == usize::MAX {
            return Ok(sample);
        }
        let Some((_, n)) = notes.iter_mut().find(|(s, _)| *s == side) else {
            return Ok(sample);
        };
        n.reads += got.reads;
        n.missing += got.missing;
        n.inserts.extend(got.inserts);
        add(&mut n.stats, got.stats);
        if side == Side::CommitSessionRead {
            let unwaited = (got.reads as usize).saturating_sub(recorded.len());
            n.waits
                .extend(recorded.into_iter().map(Duration::from_micros));
            n.waits
                .extend(std::iter::repeat_n(Duration::ZERO, unwaited));
        }
        Ok(sample)
    })
    .await?;
    let table = Table {
        workload: format!("insert, get it back, {} tasks", o.ryw_tasks),
        unit: "pair",
        series,
        baseline: 0,
    };
    Ok((table, notes))
}

/// p50 and p99 of `values`.
fn p50_p99(values: &[Duration]) -> String {
    format!(
        "p50 {} p99 {}",
        duration(quantile(values.to_vec(), 0.5)),
        duration(quantile(values.to_vec(), 0.99))
    )
}

/// Prints each side's reads, misses, inserts, waits and servers, and the
/// session read's latency against the primary read's.
pub(crate) fn print(table: &Table, notes: &[(Side, Notes)]) {
    println!(
        "\nread-your-writes over the measured rounds (the table's p50/p99: the get alone; \
         stale = the get did not find the row just inserted)"
    );
    for (side, n) in notes {
        let s = &n.stats;
        println!(
            "  {:<24} {} gets, {} stale ({:.2}%); ran on: primary {}, replica {}, fallbacks {}; \
             insert {}",
            side.label(),
            n.reads,
            n.missing,
            100.0 * n.missing as f64 / n.reads.max(1) as f64,
            s.primary,
            s.replicas,
            s.fallbacks,
            p50_p99(&n.inserts),
        );
        if *side == Side::CommitSessionRead {
            let waited: Vec<Duration> = n.waits.iter().copied().filter(|w| !w.is_zero()).collect();
            println!(
                "  {:<24} waited on the replica: {} of {} gets ({:.0}%); wait over every get {}, \
                 over those that waited {}; read_stats: {} waits, mean {:.0} µs",
                "",
                waited.len(),
                n.waits.len(),
                100.0 * waited.len() as f64 / n.waits.len().max(1) as f64,
                p50_p99(&n.waits),
                p50_p99(&waited),
                s.waits,
                s.waited_us as f64 / s.waits.max(1) as f64,
            );
        }
    }
    let series = |side: Side| table.series.iter().find(|s| s.side == side);
    let (Some(session), Some(primary)) = (
        series(Side::CommitSessionRead),
        series(Side::CommitPrimaryRead),
    ) else {
        return;
    };
    println!(
        "  get in the Session / get on_primary(), median [min..max] of per-round ratios: {}",
        ratios(session, primary)
    );
}

/// The p50 and p99 latency ratios of `a` to `b`.
fn ratios(a: &Series<Side>, b: &Series<Side>) -> String {
    let (p50, p50_min, p50_max) = a.latency_ratio_to(b, 0.5);
    let (p99, p99_min, p99_max) = a.latency_ratio_to(b, 0.99);
    format!("p50 {p50:.2} [{p50_min:.2}..{p50_max:.2}], p99 {p99:.2} [{p99_min:.2}..{p99_max:.2}]")
}
