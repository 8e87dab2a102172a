//! [`Relay`]: moves committed outbox rows to their destinations.
//!
//! One pass ([`Relay::relay_once`]) runs in one transaction: lock a batch of
//! due rows with `FOR UPDATE SKIP LOCKED` (so relays in several processes
//! share the work without a leader), deliver each destination's share under
//! the publish deadline, mark delivered rows done and failed rows retried
//! (or dead), COMMIT. [`Relay::run`] repeats passes: at once while batches
//! come back full, else when a committing unit's `NOTIFY` arrives (`LISTEN`
//! on a connection of its own), or after the poll interval when
//! notifications are lost (a dropped listener connection reconnects on the
//! next wait). Behind a transaction pooler ([`PoolerMode::Transaction`](crate::PoolerMode))
//! it only polls: `LISTEN` belongs to a server connection that the pooler
//! hands to other clients after each transaction, so notifications would
//! reach whoever holds it, or no one.
//!
//! Connections: a pass holds one pooled connection from taking its batch to
//! COMMIT, while the destinations run. A destination that writes to the
//! same database through the same backend (an effect recorded with
//! [`PgBackend::run_once`], say) takes a second one meanwhile, so give such
//! relays at least two connections per concurrent pass, or their effects a
//! backend of their own: with one, each delivery waits out the acquire
//! timeout and fails, and its rows are retried, never lost.

mod options;
pub(crate) mod pass;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reposmith_core::outbox::{CHANNEL, Deliver, Destination, OutboxMessage};
use reposmith_core::{Error, Result};
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::PgBackend;

pub use options::RelayOptions;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayReport {
    /// Rows locked by the pass.
    pub taken: usize,
    /// Rows delivered and marked done.
    pub delivered: usize,
    /// Rows whose delivery failed and that will be retried (including rows
    /// whose destination was unreachable, which does not count as an attempt).
    pub retried: usize,
    /// Rows that failed their last allowed delivery and turned dead.
    pub dead: usize,
    /// The batch was full: more rows are probably due.
    pub full: bool,
}

/// Moves committed outbox rows to destinations; see the module docs.
///
/// ```no_run
/// # async fn demo(pg: reposmith_postgres::PgBackend, queue: impl reposmith_core::outbox::Deliver + 'static) -> reposmith_core::Result<()> {
/// use reposmith_postgres::outbox::Relay;
///
/// let relay = Relay::new(&pg).queues(queue).spawn();
/// // ... the application runs; on shutdown:
/// relay.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Relay {
    backend: PgBackend,
    /// The destination of every queue without a route of its own.
    queues: Option<Arc<dyn Deliver>>,
    /// Routes by stored destination (`queue:<name>`, `topic:<name>`).
    routes: BTreeMap<String, Arc<dyn Deliver>>,
    options: RelayOptions,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("queues", &self.queues)
            .field("routes", &self.routes)
            .field("options", &self.options)
            .finish()
    }
}

impl Relay {
    /// A relay on `backend` with no routes yet and default options.
    pub fn new(backend: &PgBackend) -> Relay {
        Relay {
            backend: backend.clone(),
            queues: None,
            routes: BTreeMap::new(),
            options: RelayOptions::default(),
        }
    }

    /// Routes the jobs of every queue without a route of its own to
    /// `destination`.
    pub fn queues(mut self, destination: impl Deliver + 'static) -> Relay {
        self.queues = Some(Arc::new(destination));
        self
    }

    /// Routes the jobs of queue `name` to `destination` (a relay per queue,
    /// or a queue served by another destination than the rest).
    pub fn queue(self, name: &str, destination: impl Deliver + 'static) -> Result<Relay> {
        self.route(Destination::queue(name)?, Arc::new(destination))
    }

    /// Routes the events of `topic` to `destination`.
    pub fn topic(self, topic: &str, destination: impl Deliver + 'static) -> Result<Relay> {
        self.route(Destination::topic(topic)?, Arc::new(destination))
    }

    fn route(mut self, destination: Destination, deliver: Arc<dyn Deliver>) -> Result<Relay> {
        self.routes.insert(destination.to_string(), deliver);
        Ok(self)
    }

    /// Routes the events of `topic` to an application handler, called once
    /// per message in outbox order. It must be idempotent on the message id.
    pub fn handler<F, Fut>(self, topic: &str, handler: F) -> Result<Relay>
    where
        F: Fn(OutboxMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.topic(topic, reposmith_core::outbox::Handler::new(handler))
    }

    /// Replaces the options.
    pub fn options(mut self, options: RelayOptions) -> Relay {
        self.options = options;
        self
    }

    fn route_of(&self, destination: &Destination) -> Option<Arc<dyn Deliver>> {
        let own = self.routes.get(&destination.to_string()).cloned();
        match destination {
            Destination::Queue(_) => own.or_else(|| self.queues.clone()),
            Destination::Topic(_) => own,
        }
    }

    /// Runs passes until `shutdown` completes: see the module docs. Errors
    /// (Postgres or a destination down) are logged and retried with a
    /// backoff capped at the poll interval; rows are never dropped.
    pub async fn run<S>(self, shutdown: S) -> Result<()>
    where
        S: Future<Output = ()> + Send,
    {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut listener: Option<PgListener> = None;
        let mut failures = 0u32;
        let mut last_purge = tokio::time::Instant::now();
        let listens = self.can_listen();
        loop {
            if listens && listener.is_none() {
                listener = self.listen().await;
            }
            let wait = match self.relay_once().await {
                Ok(report) => {
                    failures = 0;
                    match report.full {
                        true => Duration::ZERO,
                        false => self.options.poll_interval,
                    }
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "outbox relay pass failed");
                    // 50 ms doubling, capped at the poll interval: never a tight loop.
                    let backoff = Duration::from_millis(50) * 2u32.pow(failures.min(10));
                    backoff.min(self.options.poll_interval)
                }
            };
            // The pass served every notification buffered so far.
            if let Some(active) = listener.as_mut() {
                while active.next_buffered().is_some() {}
            }
            if last_purge.elapsed() >= self.options.purge_interval {
                last_purge = tokio::time::Instant::now();
                self.purge().await;
            }
            if wait.is_zero() {
                // A backlog: run the next pass at once, unless asked to stop.
                tokio::select! {
                    biased;
                    () = &mut shutdown => return Ok(()),
                    () = std::future::ready(()) => continue,
                }
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                woken = wait_for_notification(&mut listener, wait) => {
                    if !woken {
                        // The listener broke; the next loop opens a new one.
                        listener = None;
                    }
                }
            }
        }
    }

    /// Deletes done rows and job receipts past the retention.
    async fn purge(&self) {
        let outbox = super::Outbox::new(&self.backend);
        let retention = self.options.retention;
        if let Err(error) = outbox.purge_done(retention).await {
            tracing::warn!(%error, "outbox purge of done rows failed");
        }
        if let Err(error) = outbox.purge_receipts(retention).await {
            tracing::warn!(%error, "outbox purge of job receipts failed");
        }
    }

    /// Spawns [`run`](Self::run) on the tokio runtime.
    pub fn spawn(self) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        RelayHandle { stop, task }
    }

    /// Whether notifications can wake this relay; says once when not.
    fn can_listen(&self) -> bool {
        if self.backend.pooler() == crate::PoolerMode::Direct {
            return true;
        }
        tracing::info!(
            poll_interval = ?self.options.poll_interval,
            "outbox relay behind a transaction pooler: LISTEN cannot work there, polling instead"
        );
        false
    }

    /// A `LISTEN` connection, or `None` (polling only) when it cannot be
    /// opened within the poll interval; the run loop tries again later.
    async fn listen(&self) -> Option<PgListener> {
        let connect = async {
            let mut listener = PgListener::connect_with(self.backend.pool()).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match tokio::time::timeout(
            self.options.poll_interval.max(Duration::from_secs(1)),
            connect,
        )
        .await
        {
            Ok(Ok(listener)) => Some(listener),
            Ok(Err(error)) => {
                tracing::debug!(error = %self.backend.map_error(error), "outbox LISTEN unavailable; polling");
                None
            }
            Err(_) => None,
        }
    }
}

/// Waits up to `wait` for a notification; false when the listener broke.
async fn wait_for_notification(listener: &mut Option<PgListener>, wait: Duration) -> bool {
    let Some(active) = listener.as_mut() else {
        tokio::time::sleep(wait).await;
        return true;
    };
    match tokio::time::timeout(wait, active.try_recv()).await {
        Err(_) => true,
        Ok(Ok(Some(_))) => {
            // Many commits in a burst: one pass serves them all.
            while active.next_buffered().is_some() {}
            true
        }
        Ok(Ok(None)) | Ok(Err(_)) => false,
    }
}

/// A running relay task.
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl RelayHandle {
    /// Stops the relay after its current pass and waits for it.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(Error::config(
                "outbox",
                format!("the relay task failed: {join}"),
            )),
        }
    }
}
