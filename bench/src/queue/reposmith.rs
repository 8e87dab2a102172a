//! `reposmith`: reposmith's own Redis queue, `Queue<Job>` + one `Worker`
//! with `concurrency(workers)`, as its module docs show it.
//!
//! Fairness with `raw`: the same number of handlers in flight (raw runs
//! `workers` one-at-a-time loops, this one worker runs `workers` handlers at
//! once, fetching as many jobs per round trip as it has free slots), and a
//! connection of its own per producer (raw's producers each have one too);
//! the worker has its own backend (its dedicated fetch connection plus the
//! shared one its acks go through). Producers either await one `enqueue`
//! per job, as raw awaits one LPUSH, or, in the batched variant, build
//! [`BATCH`] jobs and send them with one `enqueue_many`; each job's latency
//! runs from its creation, so a batched job's includes the building of its
//! batch. A round ends at the worker's last acknowledgement, read from its
//! counts every millisecond (acks happen after the handler returns).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reposmith::queue::{JobContext, JobError, Queue, Worker, WorkerHandle};
use reposmith::{RedisBackend, RedisConfig};

use super::contender::{BoxFut, Contender, Env, Job, Tally, share};
use crate::Result;
use crate::measure::Sample;

/// Jobs per `enqueue_many` call in the batched variant.
pub(crate) const BATCH: usize = 100;
/// How long a worker gets to stop once its round is over.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Every reposmith contender's jobs go to this queue; the server is flushed
/// between runs, so they never meet.
impl reposmith::job::Job for Job {
    const QUEUE: &'static str = "bench-reposmith";
}

/// The reposmith queue contender: `batch` jobs per enqueue call (1: one
/// `enqueue` each).
#[derive(Debug)]
pub(crate) struct Reposmith {
    batch: usize,
    worker: Option<RedisBackend>,
    producers: Vec<RedisBackend>,
}

impl Reposmith {
    /// One `enqueue` per job.
    pub(crate) fn single() -> Self {
        Self::batched(1)
    }

    /// `batch` jobs per `enqueue_many`.
    pub(crate) fn batched(batch: usize) -> Self {
        Self {
            batch: batch.max(1),
            worker: None,
            producers: Vec::new(),
        }
    }
}

/// A backend of its own on the bench's server.
pub(crate) async fn backend(env: &Env) -> Result<RedisBackend> {
    Ok(RedisBackend::connect(&RedisConfig::new(env.url.as_str())).await?)
}

impl Contender for Reposmith {
    fn label(&self) -> &'static str {
        match self.batch {
            1 => "reposmith Queue",
            _ => "reposmith enqueue_many(100)",
        }
    }

    fn setup<'a>(&'a mut self, env: &'a Env) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.worker = Some(backend(env).await?);
            for _ in 0..env.producers {
                self.producers.push(backend(env).await?);
            }
            Ok(())
        })
    }

    fn run<'a>(&'a mut self, env: &'a Env, jobs: usize) -> BoxFut<'a, Sample> {
        Box::pin(async move {
            let worker = self.worker.as_ref().ok_or("reposmith: setup did not run")?;
            let deadline = Instant::now() + env.round_limit;
            let tally = Arc::new(Tally::new(jobs));
            let handle = start_worker(worker, env.workers, &tally, |_| {}).await?;
            let started = Instant::now();
            let producers: Vec<_> = self
                .producers
                .iter()
                .enumerate()
                .map(|(p, backend)| {
                    let queue = Queue::<Job>::new(backend);
                    let ids = share(jobs, env.producers, p);
                    tokio::spawn(produce(queue, ids, self.batch, tally.clone()))
                })
                .collect();
            for producer in producers {
                producer.await??;
            }
            let end = await_acks(&handle, jobs, deadline).await;
            handle.shutdown(SHUTDOWN_GRACE).await;
            let end = end?;
            check_handled(&tally, jobs)?;
            Ok(Sample {
                wall: end.duration_since(started),
                latencies: tally.latencies(),
                units: jobs as u64,
            })
        })
    }

    fn teardown<'a>(&'a mut self, _env: &'a Env) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.worker = None;
            self.producers.clear();
            Ok(())
        })
    }
}

/// Enqueues jobs `ids`, `batch` per call.
async fn produce(
    queue: reposmith::Result<Queue<Job>>,
    ids: std::ops::Range<usize>,
    batch: usize,
    tally: Arc<Tally>,
) -> Result<()> {
    let queue = queue?;
    let ids: Vec<usize> = ids.collect();
    for chunk in ids.chunks(batch) {
        if let [id] = chunk {
            queue.enqueue(&tally.job(*id)).await?;
        } else {
            let jobs: Vec<Job> = chunk.iter().map(|id| tally.job(*id)).collect();
            queue.enqueue_many(&jobs).await?;
        }
    }
    Ok(())
}

/// A worker on `backend` running `concurrency` no-op handlers that record
/// each job in `tally` (and pass it to `also`) as they start.
pub(crate) async fn start_worker(
    backend: &RedisBackend,
    concurrency: usize,
    tally: &Arc<Tally>,
    also: impl Fn(&Job) + Send + Sync + 'static,
) -> Result<WorkerHandle> {
    let tally = tally.clone();
    let handle = Worker::new(Queue::<Job>::new(backend)?)
        .concurrency(concurrency)
        .run(move |ctx: JobContext<Job>| {
            also(ctx.job());
            tally.handled(ctx.job());
            async { Ok::<(), JobError>(()) }
        })
        .await?;
    Ok(handle)
}

/// Waits until the worker has acknowledged `jobs` jobs; returns when it saw
/// that, or fails at `deadline`.
pub(crate) async fn await_acks(
    handle: &WorkerHandle,
    jobs: usize,
    deadline: Instant,
) -> Result<Instant> {
    loop {
        let counts = handle.counts();
        if counts.completed >= jobs as u64 {
            return Ok(Instant::now());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "reposmith: {} of {jobs} jobs acknowledged at the round limit ({counts:?})",
                counts.completed
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Every job reached a handler.
pub(crate) fn check_handled(tally: &Tally, jobs: usize) -> Result<()> {
    match tally.count() {
        n if n == jobs => Ok(()),
        n => Err(format!("reposmith: {n} of {jobs} jobs handled").into()),
    }
}
