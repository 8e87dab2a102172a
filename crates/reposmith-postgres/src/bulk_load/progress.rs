//! Progress of a bulk load: what the caller's callback receives, the
//! tracing events, and the poller that reads the server's progress views
//! (`pg_stat_progress_copy`, `pg_stat_progress_create_index`) on a second
//! pooled connection while the load's own connection is busy.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::PgBackend;
use crate::pool::PooledConnection;

use super::LoadMode;

/// The step a bulk load is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadPhase {
    /// Every row is being checked (and missing embeddings computed) before
    /// anything is sent.
    Checking,
    /// Locking the table (exclusive mode), reading its indexes, dropping
    /// leftovers of interrupted concurrent builds.
    Preparing,
    /// Rows going in through `COPY`; [`LoadProgress::rows_copied`] counts them.
    Copying,
    /// A vector index being built or rebuilt; [`LoadProgress::index`] names
    /// it and [`LoadProgress::build`] carries the server's progress.
    Building,
    /// `ANALYZE` of the table, so the planner sees its new size.
    Analyzing,
    /// Finished.
    Done,
}

impl LoadPhase {
    fn name(self) -> &'static str {
        match self {
            LoadPhase::Checking => "checking",
            LoadPhase::Preparing => "preparing",
            LoadPhase::Copying => "copying",
            LoadPhase::Building => "building",
            LoadPhase::Analyzing => "analyzing",
            LoadPhase::Done => "done",
        }
    }
}

/// A snapshot of a running bulk load, given to the `progress` callback at
/// every phase change and then every `progress_interval` while the server
/// works (copying, building).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadProgress {
    /// The step in progress.
    pub phase: LoadPhase,
    /// The mode chosen ([`LoadMode::Auto`] until it is decided).
    pub mode: LoadMode,
    /// Rows the server has taken so far (from `pg_stat_progress_copy`
    /// while copying; all of them once the copy committed).
    pub rows_copied: u64,
    /// Rows in this load.
    pub rows_total: u64,
    /// The index being built, in [`LoadPhase::Building`].
    pub index: Option<String>,
    /// The server's progress of that build, once it has been read.
    pub build: Option<BuildProgress>,
    /// Time since the load started.
    pub elapsed: Duration,
}

/// One reading of `pg_stat_progress_create_index` for the build in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuildProgress {
    /// The server's phase, such as `building index: loading tuples` or, for
    /// a concurrent rebuild, `waiting for old snapshots`.
    pub server_phase: String,
    /// Table blocks scanned so far.
    pub blocks_done: u64,
    /// Table blocks to scan (0 when the phase has none).
    pub blocks_total: u64,
    /// Tuples processed so far (pgvector reports them in its loading phase).
    pub tuples_done: u64,
    /// Tuples to process (0 when unknown: pgvector's HNSW leaves it unset).
    pub tuples_total: u64,
    /// Parallel maintenance workers helping the build right now.
    pub workers: u32,
}

/// The caller's progress callback.
pub(crate) type Callback = Arc<dyn Fn(&LoadProgress) + Send + Sync>;

/// Keeps the current [`LoadProgress`], hands it to the callback and emits
/// tracing events.
pub(crate) struct Reporter {
    callback: Option<Callback>,
    started: Instant,
    state: Mutex<LoadProgress>,
    /// Most parallel workers seen helping one build (reset per build).
    workers_seen: AtomicU32,
    pub(crate) interval: Duration,
}

impl Reporter {
    pub(crate) fn new(callback: Option<Callback>, rows: u64, interval: Duration) -> Reporter {
        Reporter {
            callback,
            started: Instant::now(),
            state: Mutex::new(LoadProgress {
                phase: LoadPhase::Checking,
                mode: LoadMode::Auto,
                rows_copied: 0,
                rows_total: rows,
                index: None,
                build: None,
                elapsed: Duration::ZERO,
            }),
            workers_seen: AtomicU32::new(0),
            interval,
        }
    }

    /// True when someone listens: only then is the server polled.
    pub(crate) fn polls(&self) -> bool {
        self.callback.is_some()
    }

    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Enters `phase` (for [`LoadPhase::Building`], of `index`).
    pub(crate) fn phase(&self, phase: LoadPhase, index: Option<&str>) {
        let snapshot = self.update(|p| {
            p.phase = phase;
            p.index = index.map(str::to_owned);
            p.build = None;
        });
        if phase == LoadPhase::Building {
            self.workers_seen.store(0, Ordering::Relaxed);
        }
        tracing::info!(
            target: "reposmith::bulk_load",
            phase = phase.name(),
            mode = snapshot.mode.name(),
            index = snapshot.index.as_deref(),
            rows_copied = snapshot.rows_copied,
            rows_total = snapshot.rows_total,
            elapsed_ms = snapshot.elapsed.as_millis() as u64,
            "bulk load {}",
            phase.name(),
        );
        self.emit(&snapshot);
    }

    pub(crate) fn mode(&self, mode: LoadMode) {
        self.update(|p| p.mode = mode);
    }

    /// Rows the server has taken (a poll, or the copy's end).
    pub(crate) fn copied(&self, rows: u64, notify: bool) {
        let snapshot = self.update(|p| p.rows_copied = rows);
        tracing::debug!(target: "reposmith::bulk_load", rows_copied = rows, "bulk load copying");
        if notify {
            self.emit(&snapshot);
        }
    }

    /// A reading of the build's progress.
    pub(crate) fn build(&self, build: BuildProgress) {
        self.workers_seen
            .fetch_max(build.workers, Ordering::Relaxed);
        tracing::debug!(
            target: "reposmith::bulk_load",
            server_phase = %build.server_phase,
            blocks_done = build.blocks_done,
            blocks_total = build.blocks_total,
            tuples_done = build.tuples_done,
            workers = build.workers,
            "bulk load building",
        );
        let snapshot = self.update(|p| p.build = Some(build));
        self.emit(&snapshot);
    }

    /// Most parallel workers seen in the current build's readings.
    pub(crate) fn workers_seen(&self) -> u32 {
        self.workers_seen.load(Ordering::Relaxed)
    }

    fn update(&self, change: impl FnOnce(&mut LoadProgress)) -> LoadProgress {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut state);
        state.elapsed = self.started.elapsed();
        state.clone()
    }

    fn emit(&self, snapshot: &LoadProgress) {
        if let Some(callback) = &self.callback {
            callback(snapshot);
        }
    }
}

/// What the poller reads while the load's connection (backend `pid`) works.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Watch {
    Copy,
    Build,
}

/// Reads the server's progress of backend `pid` every interval until
/// dropped; gives up quietly when no second connection is free (the load
/// goes on without readings).
pub(crate) async fn poll(backend: &PgBackend, reporter: &Reporter, pid: i32, watch: Watch) {
    if !reporter.polls() {
        return std::future::pending().await;
    }
    let mut connection: Option<PooledConnection> = None;
    loop {
        tokio::time::sleep(reporter.interval).await;
        if connection.is_none() {
            match backend.acquire().await {
                Ok(c) => connection = Some(c),
                Err(error) => {
                    tracing::debug!(%error, "bulk load: no connection to read progress with");
                    return std::future::pending().await;
                }
            }
        }
        let Some(c) = connection.as_mut() else {
            continue;
        };
        let ok = match watch {
            Watch::Copy => read_copy(c, pid).await.map(|rows| {
                if let Some(rows) = rows {
                    reporter.copied(rows, true);
                }
            }),
            Watch::Build => read_build(c, pid).await.map(|build| {
                if let Some(build) = build {
                    reporter.build(build);
                }
            }),
        };
        if let Err(error) = ok {
            tracing::debug!(%error, "bulk load: reading progress failed");
            connection = None;
        }
    }
}

async fn read_copy(c: &mut PooledConnection, pid: i32) -> sqlx::Result<Option<u64>> {
    let outcome: sqlx::Result<Option<i64>> =
        sqlx::query_scalar("SELECT tuples_processed FROM pg_stat_progress_copy WHERE pid = $1")
            .bind(pid)
            .fetch_optional(&mut **c)
            .await;
    c.settle(&outcome);
    Ok(outcome?.map(|n| n.max(0) as u64))
}

async fn read_build(c: &mut PooledConnection, pid: i32) -> sqlx::Result<Option<BuildProgress>> {
    type Row = (String, i64, i64, i64, i64, i64);
    let outcome: sqlx::Result<Option<Row>> = sqlx::query_as(
        "SELECT p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, \
                (SELECT count(*) FROM pg_stat_activity a WHERE a.leader_pid = p.pid) \
         FROM pg_stat_progress_create_index p WHERE p.pid = $1",
    )
    .bind(pid)
    .fetch_optional(&mut **c)
    .await;
    c.settle(&outcome);
    let count = |n: i64| n.max(0) as u64;
    Ok(
        outcome?.map(|(phase, bd, bt, td, tt, workers)| BuildProgress {
            server_phase: phase,
            blocks_done: count(bd),
            blocks_total: count(bt),
            tuples_done: count(td),
            tuples_total: count(tt),
            workers: u32::try_from(workers).unwrap_or(0),
        }),
    )
}

/// Runs `main` to completion while polling `side` alongside (the progress
/// poller); `side` is dropped when `main` ends. No runtime needed: both run
/// in the caller's task.
pub(crate) async fn beside<T>(main: impl Future<Output = T>, side: impl Future<Output = ()>) -> T {
    let mut main = pin!(main);
    let mut side = pin!(side);
    let mut side_done = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(value) = main.as_mut().poll(cx) {
            return Poll::Ready(value);
        }
        if !side_done && side.as_mut().poll(cx).is_ready() {
            side_done = true;
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pending `n` times (waking itself), then ready with `value`.
    fn after<T: Unpin + Copy>(n: u32, value: T) -> impl Future<Output = T> {
        let mut left = n;
        std::future::poll_fn(move |cx| match left {
            0 => Poll::Ready(value),
            _ => {
                left -= 1;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
    }

    #[test]
    fn the_side_runs_while_the_main_future_does_and_stops_with_it() {
        let polls = AtomicU32::new(0);
        let side = std::future::poll_fn(|_| {
            polls.fetch_add(1, Ordering::Relaxed);
            Poll::<()>::Pending
        });
        let mut both = pin!(beside(after(3, 7), side));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut result = None;
        for _ in 0..10 {
            if let Poll::Ready(v) = both.as_mut().poll(&mut cx) {
                result = Some(v);
                break;
            }
        }
        assert_eq!(result, Some(7));
        assert_eq!(
            polls.load(Ordering::Relaxed),
            3,
            "polled beside each pending main poll"
        );
    }

    #[test]
    fn the_callback_sees_phases_and_counts() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let callback: Callback = Arc::new(move |p: &LoadProgress| {
            sink.lock()
                .unwrap()
                .push((p.phase, p.rows_copied, p.index.clone()));
        });
        let reporter = Reporter::new(Some(callback), 10, Duration::from_secs(1));
        reporter.phase(LoadPhase::Copying, None);
        reporter.copied(10, true);
        reporter.phase(LoadPhase::Building, Some("docs_embedding_idx"));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (LoadPhase::Copying, 0, None),
                (LoadPhase::Copying, 10, None),
                (
                    LoadPhase::Building,
                    10,
                    Some("docs_embedding_idx".to_owned())
                ),
            ]
        );
    }
}
