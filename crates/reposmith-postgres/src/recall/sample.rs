//! One sample's life: the [`Ticket`] a search holds while it runs (its
//! place in the queue), the task that waits for a slot and re-runs the
//! search exactly, and the measurement it records and reports.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use reposmith_core::search::SearchQuery;
use reposmith_core::{Entity, FieldType, Result, Scored};
use tracing::Instrument;

use super::field::{FieldState, RecallSample};
use super::measure::{Hit, recall_at_k};
use super::tuner::Decision;
use super::{RecallMonitor, exact};
use crate::PgBackend;

/// A search chosen for sampling, holding its place in the queue while it
/// runs; dropped unsubmitted (the search failed or was cancelled), it gives
/// the place back.
pub(crate) struct Ticket {
    backend: Option<PgBackend>,
    field: Arc<FieldState>,
}

impl Ticket {
    pub(super) fn new(backend: PgBackend, field: Arc<FieldState>) -> Ticket {
        Ticket {
            backend: Some(backend),
            field,
        }
    }

    /// Hands the search to the monitor: `query` moves, the hits' ids and
    /// distances are copied, and the exact re-run starts in a task of its
    /// own; the caller returns at once.
    pub(crate) fn submit<E: Entity>(
        mut self,
        query: SearchQuery<E>,
        hits: &[Scored<E>],
        knob: Option<u32>,
    ) {
        let Some(backend) = self.backend.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let monitor = backend.recall();
            monitor.leave(false);
            monitor.drop_sample(&self.field);
            return;
        };
        let ann = hits
            .iter()
            .map(|h| (FieldType::to_value(h.entity.id()), h.score))
            .collect();
        let field = Arc::clone(&self.field);
        let span = tracing::info_span!(parent: None, "reposmith.recall",
            db.system = "postgresql", db.collection = field.table, vector.field = field.field);
        let job = Job {
            field,
            query,
            ann,
            knob,
        };
        runtime.spawn(run(backend, job).instrument(span));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(backend) = &self.backend {
            backend.recall().leave(false);
        }
    }
}

/// What a sample task needs.
struct Job<E> {
    field: Arc<FieldState>,
    query: SearchQuery<E>,
    ann: Vec<Hit>,
    knob: Option<u32>,
}

/// Decrements the monitor's counters however the task ends.
struct Flight<'a> {
    monitor: &'a RecallMonitor,
    running: bool,
}

impl Flight<'_> {
    fn start(&mut self) {
        self.monitor.running.fetch_add(1, Ordering::SeqCst);
        self.monitor.leave(false);
        self.running = true;
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.monitor.leave(self.running);
    }
}

/// One sample's task: a slot, the exact re-run, the measurement.
async fn run<E: Entity>(backend: PgBackend, job: Job<E>) {
    let monitor = backend.recall();
    let mut flight = Flight {
        monitor,
        running: false,
    };
    let Ok(_slot) = monitor.slots.acquire().await else {
        return;
    };
    flight.start();
    let started = Instant::now();
    let outcome = exact::exact_hits(&backend, &job.query, monitor.config.timeout).await;
    measure(&job, outcome, started);
}

fn measure<E: Entity>(job: &Job<E>, outcome: Result<Vec<Hit>>, started: Instant) {
    let field = &job.field;
    let exact = match outcome {
        Ok(exact) => exact,
        Err(error) => {
            field.failed();
            tracing::warn!(target: "reposmith::recall", %error,
                db.collection = field.table, vector.field = field.field,
                "exact recall re-run failed");
            return;
        }
    };
    let Some(recall) = recall_at_k(&job.ann, &exact) else {
        field.empty();
        return;
    };
    let sample = RecallSample {
        recall,
        k: job.query.k,
        exact_rows: exact.len(),
        knob: job.knob,
        exact_time: started.elapsed(),
    };
    let recorded = field.record(sample);
    let current = field.tuned().or(job.knob).unwrap_or(0);
    tracing::info!(
        target: "reposmith::recall",
        recall,
        db.collection = field.table,
        vector.field = field.field,
        search.k = sample.k,
        search.knob = field.knob.setting(),
        search.knob_value = job.knob,
        recall.exact_rows = sample.exact_rows,
        recall.exact_ms = sample.exact_time.as_secs_f64() * 1e3,
        histogram.reposmith.recall.sample = recall,
        gauge.reposmith.recall = recorded.mean,
        gauge.reposmith.recall.knob = u64::from(current),
        "recall sample"
    );
    log_decision(field, recorded.decision);
}

fn log_decision(field: &FieldState, decision: Decision) {
    match decision {
        Decision::Move(c) => tracing::info!(
            target: "reposmith::recall", knob = field.knob.setting(),
            db.collection = field.table, vector.field = field.field,
            from = c.from, to = c.to, recall = c.recall,
            samples = c.samples, reason = ?c.reason, "recall tuner moved"
        ),
        Decision::Stay { reachable: false } => tracing::warn!(
            db.collection = field.table,
            vector.field = field.field,
            knob = field.knob.setting(),
            "recall target out of reach at the tuner's ceiling"
        ),
        Decision::Stay { .. } | Decision::Wait => {}
    }
}
