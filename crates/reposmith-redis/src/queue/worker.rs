//! [`Worker`]: runs a queue's jobs with a handler, and [`WorkerHandle`],
//! which reports on it and stops it gracefully.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reposmith_core::Result;
use reposmith_core::job::Job;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::check::check_server;
use super::context::{JobContext, JobError};
use super::fetcher::fetch_loop;
use super::producer::Queue;

/// The shortest lease a worker takes: renewals run every third of it.
const MIN_LEASE: Duration = Duration::from_millis(50);
/// The most handlers one worker runs at once.
const MAX_CONCURRENCY: usize = 10_000;

/// Runs the jobs of one queue.
///
/// ```no_run
/// # use reposmith_redis::queue::{Job, JobError, Queue, Worker};
/// # use std::time::Duration;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Embed { id: i64 }
/// # impl Job for Embed { const QUEUE: &'static str = "embed"; }
/// # async fn run(backend: reposmith_redis::RedisBackend) -> reposmith_core::Result<()> {
/// let queue = Queue::<Embed>::new(&backend)?;
/// let worker = Worker::new(queue)
///     .concurrency(8)
///     .lease(Duration::from_secs(30))
///     .run(|ctx| async move {
///         let id = ctx.job().id;
///         if id < 0 {
///             return Err(JobError::fatal(format!("negative id {id}")));
///         }
///         Ok(())
///     })
///     .await?;
/// // ... on shutdown:
/// let report = worker.shutdown(Duration::from_secs(10)).await;
/// println!("{} jobs handed back", report.released.len());
/// # Ok(()) }
/// ```
pub struct Worker<J: Job> {
    queue: Queue<J>,
    concurrency: usize,
    lease: Duration,
}

impl<J: Job> std::fmt::Debug for Worker<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue.name())
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .finish()
    }
}

impl<J: Job> Worker<J> {
    /// A worker for `queue`: one handler at a time, 30 s leases.
    pub fn new(queue: Queue<J>) -> Worker<J> {
        Worker {
            queue,
            concurrency: 1,
            lease: Duration::from_secs(30),
        }
    }

    /// Runs up to `n` handlers at once (1 to 10,000).
    pub fn concurrency(mut self, n: usize) -> Worker<J> {
        self.concurrency = n.clamp(1, MAX_CONCURRENCY);
        self
    }

    /// How long a fetched job stays this worker's without a renewal (at
    /// least 50 ms). Renewals run every third of it while the handler runs;
    /// a worker that dies or stalls longer loses its jobs to other workers.
    pub fn lease(mut self, lease: Duration) -> Worker<J> {
        self.lease = lease.max(MIN_LEASE);
        self
    }

    /// Checks the server ([`check_server`]) and starts fetching in a task of
    /// its own; `handler` runs once per attempt. Returns the handle that
    /// stops it.
    pub async fn run<H, Fut>(self, handler: H) -> Result<WorkerHandle>
    where
        H: Fn(JobContext<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), JobError>> + Send + 'static,
    {
        check_server(self.queue.backend()).await?;
        let (stop, stopped) = watch::channel(None);
        let counts = Arc::new(Counters::default());
        let worker_id = Uuid::now_v7();
        let span = tracing::info_span!("reposmith.worker", queue = %self.queue.name(),
            worker.id = %worker_id);
        let state = Arc::new(WorkerState {
            queue: self.queue,
            lease: self.lease,
            counts: Arc::clone(&counts),
            leased: Mutex::new(HashMap::new()),
        });
        let fetching = fetch_loop(state, Arc::new(handler), self.concurrency, stopped);
        let task = tokio::spawn(fetching.instrument(span));
        Ok(WorkerHandle {
            stop,
            task: Some(task),
            counts,
        })
    }
}

/// What the fetch loop and the job tasks of one worker share.
pub(crate) struct WorkerState<J: Job> {
    pub(crate) queue: Queue<J>,
    pub(crate) lease: Duration,
    pub(crate) counts: Arc<Counters>,
    /// Jobs this worker holds a lease on: id → fencing token. What is left
    /// here after the shutdown grace is released.
    pub(crate) leased: Mutex<HashMap<Uuid, i64>>,
}

impl<J: Job> WorkerState<J> {
    pub(crate) fn leased(&self) -> MutexGuard<'_, HashMap<Uuid, i64>> {
        self.leased.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running worker. [`shutdown`](Self::shutdown) stops it gracefully;
/// dropping the handle stops it too, with no grace: running handlers are
/// cancelled and their jobs handed back at once.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<Option<Duration>>,
    task: Option<JoinHandle<ShutdownReport>>,
    counts: Arc<Counters>,
}

impl WorkerHandle {
    /// What this worker has done so far.
    pub fn counts(&self) -> WorkerCounts {
        self.counts.snapshot()
    }

    /// Stops fetching, waits up to `grace` for the running handlers, then
    /// cancels the rest and hands their jobs back to the queue (their
    /// attempt not counted), where another worker picks them up.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        let _ = self.stop.send(Some(grace));
        let Some(task) = self.task.take() else {
            return ShutdownReport::default();
        };
        match task.await {
            Ok(report) => report,
            Err(error) => {
                tracing::error!(%error, "the worker's fetch loop ended abnormally");
                ShutdownReport::default()
            }
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            let _ = self.stop.send(Some(Duration::ZERO));
        }
    }
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Handlers that finished within the grace period.
    pub finished: usize,
    /// Jobs cancelled at the deadline and handed back to the queue.
    pub released: Vec<Uuid>,
    /// Jobs that could not be handed back (Redis unreachable): they return
    /// to the queue when their lease expires.
    pub left_leased: Vec<Uuid>,
    /// The worker's counts once it stopped (every attempt settled or
    /// handed back).
    pub counts: WorkerCounts,
}

/// Counts of what one worker did, from [`WorkerHandle::counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerCounts {
    /// Jobs fetched (attempts started).
    pub fetched: u64,
    /// Attempts acknowledged as done.
    pub completed: u64,
    /// Failed attempts scheduled to run again.
    pub retried: u64,
    /// Jobs this worker sent to the dead-letter set.
    pub dead_lettered: u64,
    /// Acks and failures refused because the lease was lost (the worker
    /// stalled past it; another worker has or will run the job again).
    pub stale: u64,
    /// Acks whose reply was lost and whose retry was refused: the first one
    /// was most likely applied, but that cannot be told apart from a lost
    /// lease.
    pub uncertain: u64,
    /// Settlements that failed on Redis errors: the job comes back after its
    /// lease expires.
    pub unsettled: u64,
    /// Jobs handed back at shutdown.
    pub released: u64,
}

/// The atomics behind [`WorkerCounts`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) fetched: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) uncertain: AtomicU64,
    pub(crate) unsettled: AtomicU64,
    pub(crate) released: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WorkerCounts {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerCounts {
            fetched: read(&self.fetched),
            completed: read(&self.completed),
            retried: read(&self.retried),
            dead_lettered: read(&self.dead_lettered),
            stale: read(&self.stale),
            uncertain: read(&self.uncertain),
            unsettled: read(&self.unsettled),
            released: read(&self.released),
        }
    }
}
