//! Recall you can see: an opt-in monitor that re-runs a sampled fraction of
//! real vector searches exactly and exports recall@k per vector field, and
//! an opt-in tuner that moves `hnsw.ef_search` (or `ivfflat.probes`) toward
//! a recall target from those measurements, within a floor and a ceiling.
//!
//! # Why
//!
//! An approximate index answers fast and silently wrong some of the time:
//! on isotropic clustered 50k × 768 data pgvector's default `ef_search` of
//! 40 gave recall@10 0.937 (0.874 to 0.924 over three index builds in
//! `cargo xtask bench recall`), and nothing tells the application until
//! users notice.
//! The only ground truth is the exact answer, so the monitor computes it
//! for a sample of the searches the application really runs.
//!
//! # Configuration: per backend, measured per field
//!
//! [`RecallConfig`] is part of [`PgConfig`](crate::PgConfig) (`recall`) and
//! read from `REPOSMITH_PG_RECALL_*` variables (README, configuration
//! table), not set per entity, because (1) it is an operational switch an
//! operator turns on, sizes and turns off per deployment without a code
//! change, like the pool; (2) what it spends — exact scans on the database
//! and the connections they hold — is the backend's, so the concurrency and
//! queue bounds must be the backend's too; (3) what it measures and tunes is
//! still kept per (table, vector field). One target serves every field; a
//! per-field override can be added when someone needs two.
//!
//! Off by default (`sample_rate` 0): no field state, no tasks, no queries;
//! a search pays one branch.
//!
//! # A sample, from the request's side
//!
//! A vector search (by vector or by text, once embedded) on an indexed
//! field, run on the pool (not in a unit of work: another connection cannot
//! see the unit's uncommitted rows, so the comparison would be wrong) and
//! not a later page, is *eligible*. The sampler picks a fraction of them
//! with a seeded hash of a counter (one atomic add). After a sampled
//! search's rows are in, the request hands its query (moved, not copied)
//! and its hits' ids and distances to a new tokio task and returns: it
//! never waits for the exact re-run or a slot, and a full queue only
//! means the sample is dropped.
//!
//! # A sample, off the request path
//!
//! At most `queue` samples wait for one of `concurrency` slots (a
//! semaphore); a search sampled when the queue is full is dropped and
//! counted ([`FieldRecall::dropped`], [`RecallReport::dropped`]). The
//! place in the queue is taken when the search is chosen, before it runs,
//! and held while it runs: admitting samples as searches *end* would favour
//! fast searches, which are more often the ones that find their neighbours
//! (in one bench run with 96 % of samples dropped, the tuner's windows read
//! 0.017 and 0.024 above the exact check at two values; after this change,
//! 0.012 and 0.010 below: noise either way). A task
//! with a slot runs the same statement exactly (see the `exact` module: a
//! read-only transaction, `SET LOCAL enable_indexscan = off`, its own
//! `statement_timeout`) and computes recall@k = |ANN ∩ exact| / |exact|:
//! an exact run with fewer than `k` rows is the denominator; one with no
//! row is undefined and counted apart; an index hit whose distance equals
//! the k-th exact distance counts as correct (a tie: which of the tied rows
//! `LIMIT` keeps is arbitrary). Exact re-runs use a connection from the
//! repositories' pool through one function, `exact::exact_connection`,
//! which the replica router (a later issue) redirects to a replica.
//!
//! # Export
//!
//! - [`RecallMonitor::report`] (through [`PgBackend::recall`](crate::PgBackend::recall)):
//!   per field the gauge (mean recall@k over the last `window` samples), the
//!   samples themselves, the knob value in use, drops, failures, and the
//!   tuner's state and moves.
//! - A tracing event per sample, target `reposmith::recall`, level INFO,
//!   with `db.collection` (table) and `vector.field` as attributes and
//!   metric fields named for `tracing-opentelemetry`'s `MetricsLayer`
//!   prefixes: `gauge.reposmith.recall` (the window mean),
//!   `histogram.reposmith.recall.sample` (this sample),
//!   `gauge.reposmith.recall.knob` (the value searches use). A dropped
//!   sample is a DEBUG event with `monotonic_counter.reposmith.recall.dropped = 1`;
//!   a tuner move an INFO event, a failed re-run a WARN event. The project
//!   adds no metrics crate: any tracing-to-metrics layer turns these
//!   fields into instruments, and the report serves everything else.
//!
//! # Tuning
//!
//! With [`RecallConfig::tune`] set, each HNSW (IVFFlat) field gets a tuner
//! (rules in the `tuner` module: grow ×1.5 until a value reaches the target,
//! bisect down to within 10 % of the smallest value that does, re-check in
//! blocks with hysteresis) starting from the sessions' `ef_search` (for
//! `probes`, the floor), clamped to the floor and ceiling. Its value applies
//! to every search of that field that sets no `ef_search` (`probes`)
//! itself; an explicit `.ef_search(n)` always wins, and its samples are
//! reported but not fed to the tuner. A tuned value other than the
//! sessions' `ef_search` costs the search the short transaction any
//! explicit knob costs (see [`PgConfig::ef_search`](field@crate::PgConfig::ef_search)).
//!
//! What the tuner measures is the application's own traffic: its mix of
//! `k`, filters and `max_distance`. Samples run at a value other than the
//! tuner's (a search with `k` above it, a sample still in flight from
//! before a move) are ignored by the tuner.

mod config;
mod exact;
mod field;
mod measure;
mod sample;
mod tuner;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use reposmith_core::search::{SearchKind, SearchQuery};
use reposmith_core::{Entity, VectorIndex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub use config::{RecallConfig, TuneConfig};
pub use field::{FieldRecall, Knob, RecallSample, Tuning};
pub use tuner::{Change, Reason};

pub(crate) use sample::Ticket;

use crate::PgBackend;
use field::FieldState;
use measure::Sampler;
use tuner::Tuner;

/// Every field's recall, at one moment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecallReport {
    /// True when a fraction of searches is sampled.
    pub enabled: bool,
    /// The configured fraction.
    pub sample_rate: f64,
    /// Searches the sampler chose so far, dropped ones included.
    pub sampled: u64,
    /// Samples dropped because the queue was full.
    pub dropped: u64,
    /// Samples waiting for a slot now.
    pub waiting: usize,
    /// Exact re-runs running now.
    pub running: usize,
    /// True while [`RecallMonitor::pause`] holds every slot.
    pub paused: bool,
    /// One entry per vector field sampled or tuned so far.
    pub fields: Vec<FieldRecall>,
}

/// The recall monitor of one backend; see the module docs.
#[derive(Debug)]
pub struct RecallMonitor {
    config: RecallConfig,
    sampler: Sampler,
    /// The `hnsw.ef_search` sessions start with: where tuners start.
    session_ef: u32,
    slots: Arc<Semaphore>,
    paused: Mutex<Option<OwnedSemaphorePermit>>,
    waiting: AtomicUsize,
    running: AtomicUsize,
    sampled: AtomicU64,
    dropped: AtomicU64,
    idle: Notify,
    fields: RwLock<HashMap<(&'static str, &'static str), Arc<FieldState>>>,
}

impl RecallMonitor {
    pub(crate) fn new(config: RecallConfig, session_ef: u32) -> RecallMonitor {
        RecallMonitor {
            sampler: Sampler::new(config.sample_rate),
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            session_ef,
            paused: Mutex::new(None),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            sampled: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            idle: Notify::new(),
            fields: RwLock::new(HashMap::new()),
        }
    }

    /// The settings this monitor runs with.
    pub fn config(&self) -> &RecallConfig {
        &self.config
    }

    /// Every field's recall and the monitor's counters.
    pub fn report(&self) -> RecallReport {
        let fields = self.fields.read().unwrap_or_else(|p| p.into_inner());
        let mut fields: Vec<FieldRecall> = fields
            .values()
            .map(|f| f.snapshot(self.session_ef))
            .collect();
        fields.sort_by_key(|f| (f.table, f.field));
        RecallReport {
            enabled: !self.sampler.off(),
            sample_rate: self.config.sample_rate,
            sampled: self.sampled.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            paused: self.lock_paused().is_some(),
            fields,
        }
    }

    /// Holds every slot, once the samples already running or waiting for
    /// one have had theirs: new samples wait in the queue (and beyond it are
    /// dropped) until [`RecallMonitor::resume`]. For maintenance windows (a bulk load, an
    /// index rebuild) whose recall should not count.
    pub async fn pause(&self) {
        if self.lock_paused().is_some() {
            return;
        }
        let all = u32::try_from(self.config.concurrency.max(1)).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(&self.slots).acquire_many_owned(all).await else {
            return;
        };
        self.lock_paused().get_or_insert(permit);
    }

    /// Releases the slots [`RecallMonitor::pause`] holds.
    pub fn resume(&self) {
        self.lock_paused().take();
    }

    /// Waits until no sample is waiting or running (tests, shutdown).
    /// Bound it with a timeout of your own: a paused monitor with queued
    /// samples never becomes idle.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn in_flight(&self) -> usize {
        self.waiting.load(Ordering::SeqCst) + self.running.load(Ordering::SeqCst)
    }

    fn lock_paused(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tuned knob value of `column` of `E` (`ef_search` for HNSW,
    /// `probes` for IVFFlat); `None` when not tuning.
    pub(crate) fn tuned<E: Entity>(&self, column: usize) -> Option<u32> {
        self.config.tune.as_ref()?;
        self.field::<E>(column).and_then(|f| f.tuned())
    }

    /// The state of `column` of `E`, made on first use; `None` for a column
    /// without a vector index.
    fn field<E: Entity>(&self, column: usize) -> Option<Arc<FieldState>> {
        let def = E::SCHEMA.columns.get(column)?;
        let key = (E::SCHEMA.table, def.name);
        if let Some(field) = self
            .fields
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Some(Arc::clone(field));
        }
        let (knob, start, bounds) = match def.vector?.index {
            VectorIndex::Hnsw { .. } => {
                (Knob::EfSearch, self.session_ef, self.bounds(Knob::EfSearch))
            }
            VectorIndex::IvfFlat { lists } => {
                let (floor, ceiling) = self.bounds(Knob::Probes);
                (Knob::Probes, floor, (floor, ceiling.min(lists.max(floor))))
            }
            _ => return None,
        };
        let tuner = self
            .config
            .tune
            .as_ref()
            .map(|t| Tuner::new(t.rules(bounds), start));
        let names = (E::SCHEMA.entity, E::SCHEMA.table, def.field);
        let made = FieldState::new(names, knob, self.config.window, tuner);
        let mut fields = self.fields.write().unwrap_or_else(|p| p.into_inner());
        Some(Arc::clone(
            fields.entry(key).or_insert_with(|| Arc::new(made)),
        ))
    }

    fn bounds(&self, knob: Knob) -> (u32, u32) {
        match (&self.config.tune, knob) {
            (Some(t), Knob::EfSearch) => t.ef_search,
            (Some(t), Knob::Probes) => t.probes,
            (None, _) => (1, u32::MAX),
        }
    }

    /// Whether to sample this search, decided before it runs: `eligible`
    /// says it runs on the pool and is a first page; the rest is checked
    /// here. A sample is admitted to the queue (or dropped) now, not when
    /// the search ends: admitting whichever search ends first after a slot
    /// frees would favour fast searches, which find their neighbours more
    /// often, and bias the gauge upward whenever the queue is full.
    pub(crate) fn ticket<E: Entity>(
        &self,
        backend: &PgBackend,
        query: &SearchQuery<E>,
        eligible: bool,
    ) -> Option<Ticket> {
        if !eligible || self.sampler.off() {
            return None;
        }
        let SearchKind::Vector { column, .. } = query.kind else {
            return None;
        };
        if !self.sampler.take() {
            return None;
        }
        let field = self.field::<E>(column)?;
        self.sampled.fetch_add(1, Ordering::Relaxed);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.config.queue {
            self.leave(false);
            self.drop_sample(&field);
            return None;
        }
        Some(Ticket::new(backend.clone(), field))
    }

    fn drop_sample(&self, field: &FieldState) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        field.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            target: "reposmith::recall",
            knob = field.knob.setting(),
            db.collection = field.table,
            vector.field = field.field,
            monotonic_counter.reposmith.recall.dropped = 1u64,
            "recall sample dropped: the queue is full"
        );
    }

    /// A sample stops waiting (`running` false) or running.
    fn leave(&self, running: bool) {
        let counter = if running {
            &self.running
        } else {
            &self.waiting
        };
        counter.fetch_sub(1, Ordering::SeqCst);
        if self.in_flight() == 0 {
            self.idle.notify_waiters();
        }
    }
}
