//! [`TraceWriter`]: request traces written to MongoDB off the response
//! path, by one task, through a bounded channel.
//!
//! Written inline, every response waited for its trace's insert: a MongoDB
//! round trip on every request, and up to the 2 s bound on every request
//! while MongoDB is slow or away. A trace is for later reading, never the
//! client's answer, so the layer hands it to this writer and responds. The
//! channel holds at most [`TRACE_QUEUE`] traces: when MongoDB falls that
//! far behind, further traces are dropped and counted
//! ([`TraceWriter::dropped`]), never queued without bound. The writer
//! inserts what has queued up in batches of up to [`TRACE_BATCH`], each
//! within [`TRACE_TIMEOUT`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reposmith::{Repository, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::domain::RequestTrace;

/// Traces waiting to be written, at most.
pub const TRACE_QUEUE: usize = 8_192;
/// Traces written in one insert, at most.
pub const TRACE_BATCH: usize = 256;
/// The longest one batch's insert may take.
pub const TRACE_TIMEOUT: Duration = Duration::from_secs(2);

enum Message {
    Trace(Box<RequestTrace>),
    /// Answered once every trace sent before it is written (or dropped).
    Flush(oneshot::Sender<()>),
}

/// The sending half, shared by every request; cheap to clone.
#[derive(Clone)]
pub struct TraceWriter {
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for TraceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl TraceWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> TraceWriter {
        let (sender, receiver) = mpsc::channel(TRACE_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(write_loop(store, receiver, dropped.clone()));
        TraceWriter {
            sender,
            dropped,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Queues `trace` without waiting; drops it (counted) when the queue is
    /// full or the writer stopped.
    pub fn record(&self, trace: RequestTrace) {
        if self
            .sender
            .try_send(Message::Trace(Box::new(trace)))
            .is_err()
        {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged at 1, 2, 4, 8, ...: a backlog cannot flood the log.
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "request traces dropped: the trace queue is full");
            }
        }
    }

    /// Traces dropped so far: the queue was full, the writer had stopped, or
    /// their insert failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits, at most `limit`, until every trace recorded before this call
    /// is written (or dropped). False when the limit passed first.
    pub async fn flush(&self, limit: Duration) -> bool {
        let (done, written) = oneshot::channel();
        let flushed =
            async { self.sender.send(Message::Flush(done)).await.is_ok() && written.await.is_ok() };
        tokio::time::timeout(limit, flushed).await.unwrap_or(false)
    }

    /// Writes what is queued (within `limit`), then stops the writer;
    /// traces recorded afterwards are dropped.
    pub async fn shutdown(&self, limit: Duration) {
        if !self.flush(limit).await {
            tracing::warn!("request traces not all written at shutdown");
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

async fn write_loop(store: Store, mut receiver: mpsc::Receiver<Message>, dropped: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(TRACE_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Trace(trace) => batch.push(*trace),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() < TRACE_BATCH {
                next = receiver.try_recv().ok();
            }
        }
        write(&store, &mut batch, &dropped).await;
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Inserts `batch` within [`TRACE_TIMEOUT`], emptying it; a failure is
/// logged and counted, never the clients' problem.
async fn write(store: &Store, batch: &mut Vec<RequestTrace>, dropped: &AtomicU64) {
    if batch.is_empty() {
        return;
    }
    let failed = match store.repo::<RequestTrace>() {
        Err(error) => Some(error.to_string()),
        Ok(traces) => {
            match tokio::time::timeout(TRACE_TIMEOUT, traces.insert_many(batch.as_slice())).await {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some(format!("no answer within {TRACE_TIMEOUT:?}")),
            }
        }
    };
    if let Some(error) = failed {
        dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
        tracing::warn!(%error, traces = batch.len(), "request traces not written");
    }
    batch.clear();
}
