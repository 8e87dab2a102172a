//! One attempt of one job: deserialize, run the handler under the job's
//! timeout while renewing the lease, then acknowledge or record the failure.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reposmith_core::job::Job;
use reposmith_core::{RetryPolicy, Tenant};
use tokio::task::JoinHandle;
use tokio::time::sleep;
use tracing::Instrument;

use super::context::{JobContext, JobError};
use super::ops::{self, Failed, Leased};
use super::worker::{Counters, WorkerState};

/// Longest error text kept on a job.
const MAX_ERROR_LEN: usize = 4096;
/// Tries of an ack or failure report when Redis does not answer, and the
/// first pause between them (doubling).
const SETTLE_TRIES: u32 = 4;
const SETTLE_PAUSE: Duration = Duration::from_millis(250);

/// Runs one leased job to its settlement.
pub(crate) async fn run_job<J, H, Fut>(state: Arc<WorkerState<J>>, handler: Arc<H>, job: Leased)
where
    J: Job,
    H: Fn(JobContext<J>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    // Job tasks are spawned, so they do not inherit the worker's span: the
    // queue is named here again.
    let span = tracing::info_span!("reposmith.job", queue = %state.queue.name(),
        job.id = %job.id, attempt = job.attempt);
    async {
        let outcome = attempt(&state, &*handler, &job).await;
        settle(&state, &job, outcome).await;
    }
    .instrument(span)
    .await;
    // Only this lease's entry: after a reclaim this worker may hold a newer
    // lease on the same job, which shutdown must still hand back.
    let mut leased = state.leased();
    if leased.get(&job.id) == Some(&job.token) {
        leased.remove(&job.id);
    }
}

/// Runs the handler once; `Err` is the failure to record.
async fn attempt<J, H, Fut>(
    state: &WorkerState<J>,
    handler: &H,
    job: &Leased,
) -> Result<(), JobError>
where
    J: Job,
    H: Fn(JobContext<J>) -> Fut,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    let payload: J = serde_json::from_str(&job.payload).map_err(|e| {
        JobError::fatal(format!(
            "the payload of job {} does not deserialize as {}: {e}",
            job.id,
            std::any::type_name::<J>()
        ))
    })?;
    let tenant = job.tenant.clone().map(Tenant::new).transpose();
    let tenant = tenant.map_err(|e| {
        JobError::fatal(format!("the tenant of job {} is not a tenant: {e}", job.id))
    })?;
    let context = JobContext {
        job: payload,
        id: job.id,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        key: job.key.clone(),
        tenant,
    };
    // A task of its own, so a panic is a failed attempt, not a dead worker.
    let mut task = AbortOnDrop(tokio::spawn(handler(context)));
    let limit = Duration::from_millis(job.timeout_ms);
    let run = tokio::time::timeout(limit, &mut task.0);
    let renew = keep_lease(state, job);
    tokio::pin!(run, renew);
    let mut renewing = true;
    loop {
        tokio::select! {
            done = &mut run => return match done {
                Ok(Ok(result)) => result,
                Ok(Err(join)) if join.is_panic() => Err(JobError::retry(format!(
                    "the handler panicked: {}", panic_text(join.into_panic())))),
                Ok(Err(_)) => Err(JobError::retry("the handler was cancelled")),
                Err(_) => Err(JobError::retry(format!("the handler timed out after {limit:?}"))),
            },
            () = &mut renew, if renewing => renewing = false,
        }
    }
}

/// Renews the lease every third of it; returns when the lease is lost.
async fn keep_lease<J: Job>(state: &WorkerState<J>, job: &Leased) {
    let every = state.lease / 3;
    let mut conn = state.queue.backend().connection();
    loop {
        sleep(every).await;
        match ops::renew(&mut conn, &state.queue.keys, job.id, job.token, state.lease).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "lease lost (this worker stalled past it): another worker \
                    may run the job; this attempt's ack will be refused"
                );
                return;
            }
            Err(error) => tracing::warn!(%error, "lease renewal failed; retrying"),
        }
    }
}

/// Acknowledges the attempt or records its failure.
async fn settle<J: Job>(state: &WorkerState<J>, job: &Leased, outcome: Result<(), JobError>) {
    let counts = &state.counts;
    match outcome {
        Ok(()) => match with_retries(state, |mut conn| async move {
            ops::ack(&mut conn, &state.queue.keys, job.id, job.token).await
        })
        .await
        {
            Ok((true, _)) => {
                tracing::debug!("job completed");
                Counters::bump(&counts.completed, 1);
            }
            Ok((false, first_try)) if first_try => {
                tracing::warn!(
                    "ack refused: the lease was lost, so the job was or will be \
                    run again by another worker"
                );
                Counters::bump(&counts.stale, 1);
            }
            Ok((false, _)) => {
                tracing::info!(
                    "ack retried after a lost reply was refused: the first ack \
                    was most likely applied"
                );
                Counters::bump(&counts.uncertain, 1);
            }
            Err(error) => {
                tracing::error!(%error, "could not ack; the job runs again after its lease");
                Counters::bump(&counts.unsettled, 1);
            }
        },
        Err(error) => fail(state, job, &error).await,
    }
}

/// Records a failed attempt: retry after the job's backoff, or dead letter.
async fn fail<J: Job>(state: &WorkerState<J>, job: &Leased, error: &JobError) {
    let counts = &state.counts;
    let delay = RetryPolicy::new(
        job.max_attempts,
        Duration::from_millis(job.backoff_base_ms),
        Duration::from_millis(job.backoff_max_ms),
    )
    .backoff(job.attempt);
    let text = truncate(error.message());
    let report = |mut conn: crate::RedisConnection| async move {
        let lease = (job.id, job.token);
        ops::fail(
            &mut conn,
            &state.queue.keys,
            lease,
            text,
            delay,
            error.is_fatal(),
        )
        .await
    };
    match with_retries(state, report).await {
        Ok((Failed::Retry, _)) => {
            tracing::warn!(%error, retry_in = ?delay, "job failed; will retry");
            Counters::bump(&counts.retried, 1);
        }
        Ok((Failed::Dead, _)) => {
            tracing::error!(%error, "job dead-lettered");
            Counters::bump(&counts.dead_lettered, 1);
        }
        Ok((Failed::Stale, _)) => {
            tracing::warn!(%error, "failure not recorded: the lease was lost");
            Counters::bump(&counts.stale, 1);
        }
        Err(redis_error) => {
            tracing::error!(%error, %redis_error,
                "could not record the failure; the job runs again after its lease");
            Counters::bump(&counts.unsettled, 1);
        }
    }
}

/// Runs `call` on the shared connection, again after a pause when Redis
/// did not answer; the flag is true when the first try answered.
async fn with_retries<J, T, F, Fut>(
    state: &WorkerState<J>,
    mut call: F,
) -> reposmith_core::Result<(T, bool)>
where
    J: Job,
    F: FnMut(crate::RedisConnection) -> Fut,
    Fut: Future<Output = Result<T, redis::RedisError>>,
{
    let backend = state.queue.backend();
    let mut pause = SETTLE_PAUSE;
    let mut tries = 1;
    loop {
        match call(backend.connection()).await {
            Ok(value) => return Ok((value, tries == 1)),
            Err(e) => {
                let error = backend.map_error(&e);
                if tries >= SETTLE_TRIES || !error.is_unreachable() {
                    return Err(error);
                }
                tracing::debug!(%error, "Redis did not answer; trying again");
            }
        }
        sleep(pause).await;
        pause *= 2;
        tries += 1;
    }
}

fn truncate(text: &str) -> &str {
    if text.len() <= MAX_ERROR_LEN {
        return text;
    }
    let mut end = MAX_ERROR_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

/// Aborts the handler's task when the attempt ends early (timeout, worker
/// shutdown): dropping a `JoinHandle` alone would leave it running.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
