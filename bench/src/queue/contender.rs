//! What a queue contender is, and what every contender shares: the job
//! payload and the tally of handled jobs with their latencies.
//!
//! A contender is one file implementing [`Contender`]. Adding one (say,
//! reposmith's `Queue` + `Worker`, or the outbox → relay → queue path) is
//! that file plus one line in [`super::contenders`]. The driver calls
//! `setup` once, then `run` once per round (the warm-up included) on a
//! server flushed just before, then `teardown` once.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::measure::Sample;

/// A boxed future: contenders are trait objects, so the trait stays
/// dyn-compatible.
pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What every contender is told.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    /// The bench's own redis-server, flushed before each `run`.
    pub(crate) url: String,
    /// Concurrent workers (tasks, each on its own connection where the
    /// contender has a choice).
    pub(crate) workers: usize,
    /// Concurrent producer tasks; job ids are split between them.
    pub(crate) producers: usize,
    /// How long one round may take before it is an error.
    pub(crate) round_limit: Duration,
}

/// One implementation of "enqueue N no-op jobs, have `workers` handle and
/// acknowledge them".
pub(crate) trait Contender: Send {
    /// The name in the tables.
    fn label(&self) -> &'static str;

    /// Once, before the warm-up: clients, scripts, anything reusable.
    fn setup<'a>(&'a mut self, env: &'a Env) -> BoxFut<'a, ()>;

    /// One round of `jobs` jobs with ids `0..jobs`, each made by
    /// [`Tally::job`] right before its enqueue and passed to
    /// [`Tally::handled`] by its handler. Preparation (starting workers,
    /// waiting for them to register) is not timed; the returned sample's
    /// `wall` runs from the first enqueue to the last acknowledgement, its
    /// `latencies` are [`Tally::latencies`] and its `units` are `jobs`.
    /// Everything the round started must have stopped when it returns.
    fn run<'a>(&'a mut self, env: &'a Env, jobs: usize) -> BoxFut<'a, Sample>;

    /// Once, at the end: close what `setup` opened.
    fn teardown<'a>(&'a mut self, env: &'a Env) -> BoxFut<'a, ()>;
}

/// The job every contender enqueues: about 60 bytes of JSON, e.g.
/// `{"id":12345,"kind":"noop","at":1234567,"tenant":"acme-corp"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Job {
    /// 0..jobs, unique in a round.
    pub(crate) id: u64,
    /// What a real job would dispatch on.
    pub(crate) kind: String,
    /// Enqueue time, microseconds since the tally's epoch.
    pub(crate) at: u64,
    /// Padding to a typical small payload.
    pub(crate) tenant: String,
}

/// Handled jobs of one round and each one's enqueue-to-handler latency.
#[derive(Debug)]
pub(crate) struct Tally {
    epoch: Instant,
    /// Microseconds per job id; `u64::MAX` until handled.
    latency_us: Vec<AtomicU64>,
    handled: AtomicUsize,
}

impl Tally {
    /// A tally for ids `0..jobs`.
    pub(crate) fn new(jobs: usize) -> Self {
        Self {
            epoch: Instant::now(),
            latency_us: (0..jobs).map(|_| AtomicU64::new(u64::MAX)).collect(),
            handled: AtomicUsize::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Job `id`, stamped with the current time: call right before enqueueing.
    pub(crate) fn job(&self, id: usize) -> Job {
        Job {
            id: id as u64,
            kind: "noop".to_owned(),
            at: self.now_us(),
            tenant: "acme-corp".to_owned(),
        }
    }

    /// Records that `job` reached its handler; returns how many jobs have.
    /// A job handled twice (a redelivery) counts once.
    pub(crate) fn handled(&self, job: &Job) -> usize {
        let latency = self.now_us().saturating_sub(job.at);
        let Some(slot) = usize::try_from(job.id)
            .ok()
            .and_then(|i| self.latency_us.get(i))
        else {
            return self.count();
        };
        if slot.swap(latency, Ordering::Relaxed) == u64::MAX {
            return self.handled.fetch_add(1, Ordering::AcqRel) + 1;
        }
        self.count()
    }

    /// How many distinct jobs reached a handler.
    pub(crate) fn count(&self) -> usize {
        self.handled.load(Ordering::Acquire)
    }

    /// The latency of every handled job.
    pub(crate) fn latencies(&self) -> Vec<Duration> {
        self.latency_us
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|us| *us != u64::MAX)
            .map(Duration::from_micros)
            .collect()
    }
}

/// The ids producer `p` of `producers` enqueues: a contiguous share.
pub(crate) fn share(jobs: usize, producers: usize, p: usize) -> std::ops::Range<usize> {
    let per = jobs.div_ceil(producers.max(1));
    (p * per).min(jobs)..((p + 1) * per).min(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_about_sixty_bytes() {
        let job = Tally::new(1).job(12_345);
        let len = serde_json::to_string(&job).unwrap().len();
        assert!((50..=70).contains(&len), "{len}");
    }

    #[test]
    fn a_redelivered_job_counts_once() {
        let tally = Tally::new(2);
        let job = tally.job(1);
        assert_eq!(tally.handled(&job), 1);
        assert_eq!(tally.handled(&job), 1);
        assert_eq!(tally.handled(&tally.job(0)), 2);
        assert_eq!(tally.latencies().len(), 2);
    }

    #[test]
    fn shares_cover_every_id_once() {
        let ids: Vec<usize> = (0..3).flat_map(|p| share(10, 3, p)).collect();
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        assert!(share(2, 4, 3).is_empty());
    }
}
