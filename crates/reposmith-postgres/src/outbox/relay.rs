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
//! next wait).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use reposmith_core::outbox::{CHANNEL, Deliver, Destination, OutboxMessage, STATE_DEAD};
use reposmith_core::{Error, Result, RetryPolicy};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, Row};
use tokio::sync::watch;
use uuid::Uuid;

use crate::PgBackend;

/// Locks a batch of due rows this relay has routes for. Rows of an ordered
/// destination are taken even when not yet due, so a row waiting for its
/// retry holds back the rows after it.
const SELECT_SQL: &str = "SELECT seq, id, destination, payload, attempts, created_at, \
     available_at <= now() AS due \
     FROM reposmith_outbox \
     WHERE state = 'pending' \
       AND (destination = ANY($1) OR ($2 AND destination LIKE 'queue:%')) \
       AND (available_at <= now() OR destination = ANY($3)) \
       AND NOT destination = ANY($5) \
     ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED";

const DONE_SQL: &str = "UPDATE reposmith_outbox SET state = 'done', done_at = now(), last_error = NULL \
     WHERE seq = ANY($1)";

/// A failure counts as an attempt unless the destination was unreachable
/// (`counts` false): an outage delays rows, it never kills them.
const FAILED_SQL: &str = "UPDATE reposmith_outbox AS o \
     SET attempts = o.attempts + f.counts::int, \
     last_error = f.error, \
     available_at = now() + f.delay_ms * interval '1 millisecond', \
     state = CASE WHEN f.counts AND o.attempts + 1 >= $4 THEN 'dead' ELSE 'pending' END \
     FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $5::bool[]) \
       AS f(seq, error, delay_ms, counts) \
     WHERE o.seq = f.seq RETURNING o.state";

/// One relay at a time per ordered destination, for this transaction.
const LOCK_SQL: &str = "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))";

/// How a relay paces itself and when it gives up on a row.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Rows per pass (default 256).
    pub batch_size: u32,
    /// Longest wait for one destination to take its share of a pass (default
    /// 10 s); past it the share is retried later.
    pub publish_timeout: Duration,
    /// Longest wait between passes when no notification arrives (default 1 s).
    pub poll_interval: Duration,
    /// Deliveries a row gets before it turns dead (default 10).
    pub max_attempts: u32,
    /// Backoff between failed deliveries of a row (default 1 s doubling to 5 min).
    pub retry: RetryPolicy,
    /// How long done rows are kept before [`Relay::run`] purges them (default 7 days).
    pub retention: Duration,
    /// How often [`Relay::run`] purges (default 10 min).
    pub purge_interval: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            batch_size: 256,
            publish_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            max_attempts: 10,
            retry: RetryPolicy::new(10, Duration::from_secs(1), Duration::from_secs(300)),
            retention: Duration::from_secs(7 * 24 * 3600),
            purge_interval: Duration::from_secs(600),
        }
    }
}

impl RelayOptions {
    /// Sets [`batch_size`](Self::batch_size) (at least 1).
    pub fn batch_size(mut self, rows: u32) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Sets [`publish_timeout`](Self::publish_timeout).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Sets [`poll_interval`](Self::poll_interval).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts) (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the backoff between failed deliveries of a row.
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.retry = RetryPolicy::new(self.max_attempts, base, max);
        self
    }

    /// Sets [`retention`](Self::retention).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }
}

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

/// A delivered row, a failed one, or one left for a later pass.
enum Outcome {
    Done(i64),
    Failed {
        seq: i64,
        attempts: i32,
        error: String,
        /// False when the destination could not be reached: not the
        /// message's fault, so not one of its attempts.
        counts: bool,
    },
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

    /// One pass: lock a batch, deliver it, mark it, commit.
    #[tracing::instrument(name = "reposmith.outbox.relay", skip_all, fields(taken, delivered))]
    pub async fn relay_once(&self) -> Result<RelayReport> {
        let unit = self.backend.begin().await?;
        let (rows, report) = {
            let mut connection = unit.connection().await?;
            let rows = self.take_batch(&mut connection).await?;
            drop(connection);
            let outcomes = self.deliver_all(&rows).await;
            let mut connection = unit.connection().await?;
            let report = self.mark(&mut connection, &outcomes).await?;
            (rows, report)
        };
        unit.commit().await?;
        let report = RelayReport {
            taken: rows.len(),
            full: rows.len() >= self.options.batch_size as usize,
            ..report
        };
        tracing::Span::current()
            .record("taken", report.taken)
            .record("delivered", report.delivered);
        Ok(report)
    }

    /// Locks the due rows this relay routes, skipping rows other relays hold
    /// and ordered destinations another relay is delivering.
    async fn take_batch(&self, connection: &mut PgConnection) -> Result<Vec<Locked>> {
        let mut unordered = Vec::new();
        let mut ordered = Vec::new();
        // Ordered routes another relay is delivering: not even through `queues`.
        let mut busy = Vec::new();
        for (stored, destination) in &self.routes {
            if !destination.ordered() {
                unordered.push(stored.clone());
            } else if self.try_lock(connection, stored).await? {
                ordered.push(stored.clone());
            } else {
                busy.push(stored.clone());
            }
        }
        let queues_ordered = self.queues.as_ref().is_some_and(|q| q.ordered());
        let queues = match (&self.queues, queues_ordered) {
            (None, _) => false,
            (Some(_), false) => true,
            (Some(_), true) => self.try_lock(connection, "queue:*").await?,
        };
        let routed: Vec<String> = unordered.iter().chain(&ordered).cloned().collect();
        let rows = sqlx::query(SELECT_SQL)
            .bind(&routed)
            .bind(queues)
            .bind(&ordered)
            .bind(i64::from(self.options.batch_size))
            .bind(&busy)
            .fetch_all(&mut *connection)
            .await
            .map_err(|e| self.backend.map_error(e))?;
        rows.iter().map(row_of).collect()
    }

    async fn try_lock(&self, connection: &mut PgConnection, key: &str) -> Result<bool> {
        sqlx::query_scalar(LOCK_SQL)
            .bind(format!("reposmith_outbox:{key}"))
            .fetch_one(connection)
            .await
            .map_err(|e| self.backend.map_error(e))
    }

    /// Delivers each destination's rows, destinations side by side.
    async fn deliver_all(&self, rows: &[Locked]) -> Vec<Outcome> {
        let mut groups: BTreeMap<String, Vec<&Locked>> = BTreeMap::new();
        for row in rows {
            groups
                .entry(row.message.destination.to_string())
                .or_default()
                .push(row);
        }
        let deliveries = groups.into_values().filter_map(|group| {
            let destination = self.route_of(&group[0].message.destination)?;
            Some(self.deliver_group(destination, group))
        });
        join_all(deliveries).await.into_iter().flatten().collect()
    }

    fn route_of(&self, destination: &Destination) -> Option<Arc<dyn Deliver>> {
        let own = self.routes.get(&destination.to_string()).cloned();
        match destination {
            Destination::Queue(_) => own.or_else(|| self.queues.clone()),
            Destination::Topic(_) => own,
        }
    }

    /// Delivers one destination's rows under the publish deadline. An
    /// ordered destination gets only the due rows before the first that is
    /// not, and nothing after its first failure is marked.
    async fn deliver_group(
        &self,
        destination: Arc<dyn Deliver>,
        group: Vec<&Locked>,
    ) -> Vec<Outcome> {
        let ordered = destination.ordered();
        let due: Vec<&Locked> = match ordered {
            true => group.into_iter().take_while(|r| r.due).collect(),
            false => group.into_iter().filter(|r| r.due).collect(),
        };
        if due.is_empty() {
            return Vec::new();
        }
        let messages: Vec<OutboxMessage> = due.iter().map(|r| r.message.clone()).collect();
        let timeout = self.options.publish_timeout;
        let results = match tokio::time::timeout(timeout, destination.deliver(&messages)).await {
            Ok(results) if results.len() == messages.len() => results,
            Ok(results) => {
                let reason = format!(
                    "destination {destination:?} answered {} outcomes for {} messages",
                    results.len(),
                    messages.len()
                );
                messages
                    .iter()
                    .map(|_| Err(Error::config("outbox", reason.clone())))
                    .collect()
            }
            Err(_) => messages
                .iter()
                .map(|_| {
                    Err(Error::Timeout {
                        backend: reposmith_core::Backend::Postgres,
                        operation: "outbox delivery",
                        after: timeout,
                    })
                })
                .collect(),
        };
        let mut outcomes = Vec::with_capacity(messages.len());
        for (message, result) in messages.iter().zip(results) {
            match result {
                Ok(()) => outcomes.push(Outcome::Done(message.seq)),
                Err(error) => {
                    tracing::warn!(message = %message.id, destination = %message.destination,
                        attempt = message.attempts + 1, %error, "outbox delivery failed");
                    outcomes.push(Outcome::Failed {
                        seq: message.seq,
                        attempts: message.attempts,
                        error: error.to_string(),
                        counts: !error.is_unreachable(),
                    });
                    if ordered {
                        break;
                    }
                }
            }
        }
        outcomes
    }

    /// Marks delivered rows done and failed rows retried or dead.
    async fn mark(
        &self,
        connection: &mut PgConnection,
        outcomes: &[Outcome],
    ) -> Result<RelayReport> {
        let mut report = RelayReport::default();
        let done: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Done(seq) => Some(*seq),
                Outcome::Failed { .. } => None,
            })
            .collect();
        report.delivered = done.len();
        if !done.is_empty() {
            sqlx::query(DONE_SQL)
                .bind(&done)
                .execute(&mut *connection)
                .await
                .map_err(|e| self.backend.map_error(e))?;
        }
        let (mut seqs, mut errors, mut delays, mut counted) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for outcome in outcomes {
            if let Outcome::Failed {
                seq,
                attempts,
                error,
                counts,
            } = outcome
            {
                // An unreachable destination is offered again at the poll interval.
                let delay = match counts {
                    true => self
                        .options
                        .retry
                        .backoff(u32::try_from(*attempts).unwrap_or(0) + 1),
                    false => self.options.poll_interval,
                };
                seqs.push(*seq);
                errors.push(error.clone());
                delays.push(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                counted.push(*counts);
            }
        }
        if !seqs.is_empty() {
            let states: Vec<String> = sqlx::query_scalar(FAILED_SQL)
                .bind(&seqs)
                .bind(&errors)
                .bind(&delays)
                .bind(i32::try_from(self.options.max_attempts).unwrap_or(i32::MAX))
                .bind(&counted)
                .fetch_all(&mut *connection)
                .await
                .map_err(|e| self.backend.map_error(e))?;
            report.dead = states.iter().filter(|s| *s == STATE_DEAD).count();
            report.retried = states.len() - report.dead;
        }
        Ok(report)
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
        loop {
            if listener.is_none() {
                listener = self.listen().await;
            }
            let wait = match self.relay_once().await {
                Ok(report) if report.full => Duration::ZERO,
                Ok(_) => {
                    failures = 0;
                    self.options.poll_interval
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "outbox relay pass failed");
                    self.options
                        .retry
                        .backoff(failures)
                        .min(self.options.poll_interval)
                }
            };
            if last_purge.elapsed() >= self.options.purge_interval {
                last_purge = tokio::time::Instant::now();
                let purged = super::Outbox::new(&self.backend)
                    .purge_done(self.options.retention)
                    .await;
                if let Err(error) = purged {
                    tracing::warn!(%error, "outbox purge failed");
                }
            }
            if wait.is_zero() {
                continue;
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

    /// Spawns [`run`](Self::run) on the tokio runtime.
    pub fn spawn(self) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        RelayHandle { stop, task }
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

/// A locked row: its message and whether it is due now.
struct Locked {
    message: OutboxMessage,
    due: bool,
}

fn row_of(row: &sqlx::postgres::PgRow) -> Result<Locked> {
    let decode = super::undecodable;
    let seq: i64 = row.try_get("seq").map_err(decode)?;
    let id: Uuid = row.try_get("id").map_err(decode)?;
    let destination: String = row.try_get("destination").map_err(decode)?;
    let payload: serde_json::Value = row.try_get("payload").map_err(decode)?;
    let created_at: DateTime<Utc> = row.try_get("created_at").map_err(decode)?;
    let mut message = OutboxMessage::new(
        seq,
        id,
        Destination::parse(&destination)?,
        payload,
        created_at,
    );
    message.attempts = row.try_get("attempts").map_err(decode)?;
    Ok(Locked {
        message,
        due: row.try_get("due").map_err(decode)?,
    })
}
