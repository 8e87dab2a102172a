//! A worker's fetch loop: leases jobs on a dedicated connection, starts one
//! task per job within the concurrency limit, sleeps on the signal list
//! when the queue is empty, and drains at shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::RedisConnection;
use reposmith_core::job::Job;
use reposmith_core::{Error, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout, timeout_at};

use super::context::{JobContext, JobError};
use super::ops::{self, Fetched};
use super::runner::run_job;
use super::worker::{Counters, ShutdownReport, WorkerState};

/// Longest sleep on an empty queue: expired leases are reclaimed by fetches,
/// so an idle worker still fetches about once a second.
const MAX_BLOCK: Duration = Duration::from_secs(1);
/// Shortest blocking wait (`BLPOP 0` would block forever).
const MIN_BLOCK: Duration = Duration::from_millis(10);
/// First and largest pause after a Redis error.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long cancelled job tasks get to unwind at shutdown.
const ABORT_WAIT: Duration = Duration::from_secs(2);

type Stop = watch::Receiver<Option<Duration>>;

/// Fetches and runs jobs until told to stop, then drains; returns what the
/// drain did.
pub(crate) async fn fetch_loop<J, H, Fut>(
    state: Arc<WorkerState<J>>,
    handler: Arc<H>,
    concurrency: usize,
    mut stop: Stop,
) -> ShutdownReport
where
    J: Job,
    H: Fn(JobContext<J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), JobError>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut running = JoinSet::new();
    let mut conn = None;
    let mut backoff = FIRST_BACKOFF;
    while !stopping(&stop) {
        while running.try_join_next().is_some() {}
        let permits = tokio::select! {
            permits = free_slots(&slots) => permits,
            _ = stop.changed() => continue,
        };
        match fetch(&state, &mut conn, permits.len()).await {
            Ok(fetched) if fetched.jobs.is_empty() => {
                drop(permits);
                let block = fetched.next_due.map_or(MAX_BLOCK, |due| due.min(MAX_BLOCK));
                let woke = tokio::select! {
                    woke = wait_for_signal(&state, &mut conn, block.max(MIN_BLOCK)) => woke,
                    _ = stop.changed() => Ok(()),
                };
                match woke {
                    Ok(()) => backoff = FIRST_BACKOFF,
                    // Without a pause a BLPOP that fails at once (the fetch
                    // before it worked) would spin.
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?backoff,
                            "waiting for jobs failed; reconnecting");
                        conn = None;
                        pause(&mut stop, &mut backoff).await;
                    }
                }
            }
            Ok(fetched) => {
                backoff = FIRST_BACKOFF;
                start_jobs(&state, &handler, &mut running, fetched, permits);
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "fetching jobs failed; will retry");
                conn = None;
                drop(permits);
                pause(&mut stop, &mut backoff).await;
            }
        }
    }
    let grace = stop.borrow().unwrap_or(Duration::ZERO);
    drain(&state, running, grace).await
}

/// Sleeps `backoff` (or until told to stop), then doubles it up to
/// [`MAX_BACKOFF`].
async fn pause(stop: &mut Stop, backoff: &mut Duration) {
    tokio::select! {
        _ = sleep(*backoff) => {}
        _ = stop.changed() => {}
    }
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

/// True once a grace period was sent or the handle is gone.
fn stopping(stop: &Stop) -> bool {
    stop.has_changed().is_err() || stop.borrow().is_some()
}

/// Waits for one free slot, then takes every other free one.
async fn free_slots(slots: &Arc<Semaphore>) -> Vec<OwnedSemaphorePermit> {
    let Ok(first) = Arc::clone(slots).acquire_owned().await else {
        return Vec::new();
    };
    let mut permits = vec![first];
    while let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
        permits.push(permit);
    }
    permits
}

/// Leases up to `max` jobs on the worker's connection (opened on demand).
async fn fetch<J: Job>(
    state: &WorkerState<J>,
    conn: &mut Option<RedisConnection>,
    max: usize,
) -> Result<Fetched> {
    let backend = state.queue.backend();
    let connection = connection(state, conn).await?;
    let bound = backend.response_timeout() + MAX_BLOCK;
    let fetched = timeout(
        bound,
        ops::fetch(connection, &state.queue.keys, state.lease, max),
    )
    .await
    .map_err(|_| timed_out("a queue fetch", bound))?
    .map_err(|e| backend.map_error(&e))?;
    Counters::bump(&state.counts.fetched, fetched.jobs.len() as u64);
    Ok(fetched)
}

/// Blocks on the queue's signal list for up to `block`: an enqueue, a retry
/// or a released job pushes a signal.
async fn wait_for_signal<J: Job>(
    state: &WorkerState<J>,
    conn: &mut Option<RedisConnection>,
    block: Duration,
) -> Result<()> {
    let backend = state.queue.backend();
    let connection = connection(state, conn).await?;
    let bound = block + backend.response_timeout();
    let mut command = redis::cmd("BLPOP");
    command
        .arg(state.queue.keys.signal())
        .arg(format!("{:.3}", block.as_secs_f64()));
    let blpop = command.query_async::<redis::Value>(connection);
    timeout(bound, blpop)
        .await
        .map_err(|_| timed_out("BLPOP", bound))?
        .map_err(|e| backend.map_error(&e))?;
    Ok(())
}

/// The worker's dedicated connection, opened when there is none.
async fn connection<'c, J: Job>(
    state: &WorkerState<J>,
    conn: &'c mut Option<RedisConnection>,
) -> Result<&'c mut RedisConnection> {
    if conn.is_none() {
        *conn = Some(state.queue.backend().dedicated_connection().await?);
    }
    conn.as_mut()
        .ok_or_else(|| timed_out("a connection", Duration::ZERO))
}

fn timed_out(operation: &'static str, after: Duration) -> Error {
    Error::Timeout {
        backend: reposmith_core::Backend::Redis,
        operation,
        after,
    }
}

/// Starts one task per leased job, each holding one slot.
fn start_jobs<J, H, Fut>(
    state: &Arc<WorkerState<J>>,
    handler: &Arc<H>,
    running: &mut JoinSet<()>,
    fetched: Fetched,
    permits: Vec<OwnedSemaphorePermit>,
) where
    J: Job,
    H: Fn(JobContext<J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), JobError>> + Send + 'static,
{
    for (job, permit) in fetched.jobs.into_iter().zip(permits) {
        tracing::debug!(job.id = %job.id, attempt = job.attempt, "job leased");
        state.leased().insert(job.id, job.token);
        let task = run_job(Arc::clone(state), Arc::clone(handler), job);
        running.spawn(async move {
            task.await;
            drop(permit);
        });
    }
}

/// Waits up to `grace` for running jobs, cancels the rest and hands their
/// jobs back.
async fn drain<J: Job>(
    state: &WorkerState<J>,
    mut running: JoinSet<()>,
    grace: Duration,
) -> ShutdownReport {
    let mut report = ShutdownReport::default();
    let deadline = Instant::now() + grace;
    while let Ok(Some(_)) = timeout_at(deadline, running.join_next()).await {
        report.finished += 1;
    }
    running.abort_all();
    let _ = timeout(ABORT_WAIT, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    let left: Vec<(uuid::Uuid, i64)> = state.leased().drain().collect();
    let mut conn = state.queue.backend().connection();
    for (id, token) in left {
        match ops::release(&mut conn, &state.queue.keys, id, token).await {
            Ok(true) => {
                tracing::info!(job.id = %id, "job handed back at shutdown");
                Counters::bump(&state.counts.released, 1);
                report.released.push(id);
            }
            // Settled (or reclaimed) while it was being cancelled.
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(job.id = %id, %error,
                    "could not hand the job back; it returns when its lease expires");
                report.left_leased.push(id);
            }
        }
    }
    report.counts = state.counts.snapshot();
    tracing::info!(
        finished = report.finished,
        released = report.released.len(),
        left_leased = report.left_leased.len(),
        "worker stopped"
    );
    report
}
