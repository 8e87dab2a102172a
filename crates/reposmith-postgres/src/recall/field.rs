//! One vector field's measurements and tuner, and the snapshot types of
//! [`RecallMonitor::report`](super::RecallMonitor::report).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::tuner::{Change, Decision, Tuner};

/// The knob a vector field's index is searched with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Knob {
    /// `hnsw.ef_search` (HNSW index).
    EfSearch,
    /// `ivfflat.probes` (IVFFlat index).
    Probes,
}

impl Knob {
    /// The server setting's name.
    pub fn setting(self) -> &'static str {
        match self {
            Knob::EfSearch => "hnsw.ef_search",
            Knob::Probes => "ivfflat.probes",
        }
    }
}

/// One sampled search, measured.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RecallSample {
    /// recall@k: the share of the exact neighbours the index search returned.
    pub recall: f64,
    /// The search's `k`.
    pub k: u32,
    /// Rows the exact re-run returned (below `k` when a filter matched fewer).
    pub exact_rows: usize,
    /// The knob value the search ran with; `None`: the server's default `probes`.
    pub knob: Option<u32>,
    /// How long the exact re-run took, connection included.
    pub exact_time: Duration,
}

/// The recall of one vector field, as [`RecallMonitor::report`](super::RecallMonitor::report) sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FieldRecall {
    /// The entity's name.
    pub entity: &'static str,
    /// Its table.
    pub table: &'static str,
    /// The vector field.
    pub field: &'static str,
    /// The knob its index is searched with.
    pub knob: Knob,
    /// The knob value a search that sets none runs with: the tuner's when
    /// tuning, else the sessions' `ef_search`; `None` for the server's `probes`.
    pub current: Option<u32>,
    /// Samples measured.
    pub samples: u64,
    /// Samples dropped because the queue was full.
    pub dropped: u64,
    /// Exact re-runs that failed (timeout, connection); not counted in recall.
    pub failed: u64,
    /// Samples whose exact re-run found no row (recall undefined); not counted.
    pub empty: u64,
    /// The gauge: mean recall@k over the last `window` samples.
    pub recall: Option<f64>,
    /// Those samples, oldest first.
    pub recent: Vec<RecallSample>,
    /// The tuner's state, when tuning.
    pub tuning: Option<Tuning>,
}

/// A field's tuner, as seen in a report.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Tuning {
    /// The recall target.
    pub target: f64,
    /// The knob's floor.
    pub floor: u32,
    /// The knob's ceiling.
    pub ceiling: u32,
    /// True once a verdict kept the current value.
    pub settled: bool,
    /// False while the tuner sits at its ceiling with recall below target.
    pub reachable: bool,
    /// The highest value measured below target, if known.
    pub too_low: Option<u32>,
    /// The lowest value measured at or above target, if known.
    pub high_enough: Option<u32>,
    /// Samples at the current value since it was set or last re-checked.
    pub samples_at_current: usize,
    /// Their mean recall.
    pub recall_at_current: Option<f64>,
    /// Every move so far (the last 64), oldest first.
    pub changes: Vec<Change>,
}

/// Most changes a field keeps for its report.
const CHANGES_KEPT: usize = 64;

/// A field's state, shared by the searches that read its tuned knob and the
/// sample tasks that measure it.
#[derive(Debug)]
pub(crate) struct FieldState {
    pub(crate) entity: &'static str,
    pub(crate) table: &'static str,
    pub(crate) field: &'static str,
    pub(crate) knob: Knob,
    /// The tuner's current value; 0 when not tuning. Read on every search.
    tuned: AtomicU32,
    pub(crate) dropped: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    window: usize,
    recent: VecDeque<RecallSample>,
    samples: u64,
    failed: u64,
    empty: u64,
    tuner: Option<Tuner>,
    changes: VecDeque<Change>,
}

/// What recording a sample changed, for its tracing event.
pub(crate) struct Recorded {
    /// Mean over the window after this sample.
    pub(crate) mean: f64,
    pub(crate) decision: Decision,
}

impl FieldState {
    pub(crate) fn new(
        (entity, table, field): (&'static str, &'static str, &'static str),
        knob: Knob,
        window: usize,
        tuner: Option<Tuner>,
    ) -> FieldState {
        FieldState {
            entity,
            table,
            field,
            knob,
            tuned: AtomicU32::new(tuner.as_ref().map_or(0, Tuner::current)),
            dropped: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                window,
                recent: VecDeque::with_capacity(window.min(1024)),
                samples: 0,
                failed: 0,
                empty: 0,
                tuner,
                changes: VecDeque::new(),
            }),
        }
    }

    /// The tuner's value, `None` when not tuning.
    pub(crate) fn tuned(&self) -> Option<u32> {
        Some(self.tuned.load(Ordering::Relaxed)).filter(|v| *v > 0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it leaves plain counters: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a measured sample to the window and the tuner.
    pub(crate) fn record(&self, sample: RecallSample) -> Recorded {
        let mut inner = self.lock();
        inner.samples += 1;
        if inner.recent.len() == inner.window {
            inner.recent.pop_front();
        }
        inner.recent.push_back(sample);
        let mean = mean(&inner.recent).unwrap_or(sample.recall);
        let decision = match &mut inner.tuner {
            Some(tuner) => tuner.observe(sample.knob, sample.recall),
            None => Decision::Wait,
        };
        if let Decision::Move(change) = decision {
            self.tuned.store(change.to, Ordering::Relaxed);
            if inner.changes.len() == CHANGES_KEPT {
                inner.changes.pop_front();
            }
            inner.changes.push_back(change);
        }
        Recorded { mean, decision }
    }

    pub(crate) fn failed(&self) {
        self.lock().failed += 1;
    }

    pub(crate) fn empty(&self) {
        self.lock().empty += 1;
    }

    /// The snapshot for a report; `session_ef` is what untuned HNSW searches run with.
    pub(crate) fn snapshot(&self, session_ef: u32) -> FieldRecall {
        let inner = self.lock();
        let current = self.tuned().or(match self.knob {
            Knob::EfSearch => Some(session_ef),
            Knob::Probes => None,
        });
        FieldRecall {
            entity: self.entity,
            table: self.table,
            field: self.field,
            knob: self.knob,
            current,
            samples: inner.samples,
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: inner.failed,
            empty: inner.empty,
            recall: mean(&inner.recent),
            recent: inner.recent.iter().copied().collect(),
            tuning: inner.tuner.as_ref().map(|t| tuning(t, &inner.changes)),
        }
    }
}

fn tuning(tuner: &Tuner, changes: &VecDeque<Change>) -> Tuning {
    let rules = tuner.rules();
    let (too_low, high_enough) = tuner.bracket();
    let (samples_at_current, recall_at_current) = tuner.at_current();
    Tuning {
        target: rules.target,
        floor: rules.floor,
        ceiling: rules.ceiling,
        settled: tuner.settled(),
        reachable: tuner.reachable(),
        too_low,
        high_enough,
        samples_at_current,
        recall_at_current,
        changes: changes.iter().copied().collect(),
    }
}

fn mean(samples: &VecDeque<RecallSample>) -> Option<f64> {
    let n = samples.len();
    (n > 0).then(|| samples.iter().map(|s| s.recall).sum::<f64>() / n as f64)
}
