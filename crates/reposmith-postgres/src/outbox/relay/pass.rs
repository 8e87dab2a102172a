//! One relay pass, in one transaction: lock a batch of due rows, deliver
//! each destination's share, mark the outcomes.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::join_all;
use reposmith_core::outbox::{Deliver, Destination, OutboxMessage, STATE_DEAD};
use reposmith_core::{Backend, Error, Result};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Relay, RelayReport};

/// Locks a batch of due rows this relay routes. An ordered destination's
/// rows stop before its first row still waiting for a retry (`blocked`),
/// so nothing overtakes it; rows of other destinations are unaffected.
pub(crate) const SELECT_SQL: &str = "WITH blocked AS ( \
       SELECT destination, min(seq) AS seq FROM reposmith_outbox \
       WHERE state = 'pending' AND available_at > now() AND destination = ANY($3) \
       GROUP BY destination) \
     SELECT o.seq, o.id, o.destination, o.payload, o.attempts, o.created_at, o.tenant \
     FROM reposmith_outbox AS o LEFT JOIN blocked AS b ON b.destination = o.destination \
     WHERE o.state = 'pending' AND o.available_at <= now() \
       AND (o.destination = ANY($1) OR ($2 AND o.destination LIKE 'queue:%')) \
       AND NOT o.destination = ANY($5) \
       AND (b.seq IS NULL OR o.seq < b.seq) \
     ORDER BY o.seq LIMIT $4 FOR UPDATE OF o SKIP LOCKED";

const DONE_SQL: &str = "UPDATE reposmith_outbox SET state = 'done', done_at = now(), last_error = NULL \
     WHERE seq = ANY($1)";

/// Delivered rows of destinations that keep none ([`Deliver::keep_delivered`]).
const DELETE_SQL: &str = "DELETE FROM reposmith_outbox WHERE seq = ANY($1)";

/// `kind`: 0 the destination was unreachable (no attempt spent), 1 a failed
/// attempt, 2 a permanent failure (dead at once).
const FAILED_SQL: &str = "UPDATE reposmith_outbox AS o \
     SET attempts = o.attempts + (f.kind > 0)::int, \
     last_error = f.error, \
     available_at = now() + f.delay_ms * interval '1 millisecond', \
     state = CASE WHEN f.kind = 2 OR (f.kind = 1 AND o.attempts + 1 >= $4) \
       THEN 'dead' ELSE 'pending' END \
     FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $5::smallint[]) \
       AS f(seq, error, delay_ms, kind) \
     WHERE o.seq = f.seq RETURNING o.state";

/// One relay at a time per ordered destination, for this transaction.
pub(crate) const LOCK_SQL: &str = "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))";

/// The server must not end the transaction while a destination takes its
/// time (a low `idle_in_transaction_session_timeout` would turn every slow
/// delivery into a redelivery).
const IDLE_SQL: &str = "SELECT set_config('idle_in_transaction_session_timeout', $1, true)";

/// The longest retry wait written to a row.
const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

/// Why a delivery failed, as the row's state records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The destination could not be reached: the row waits, no attempt spent.
    Unreachable = 0,
    /// One attempt spent; dead after the last.
    Attempt = 1,
    /// The message can never be delivered (it does not decode, or the
    /// destination refused it as invalid): dead at once.
    Permanent = 2,
}

impl Failure {
    fn of(error: &Error) -> Failure {
        match error {
            e if e.is_unreachable() => Failure::Unreachable,
            Error::InvalidInput { .. } | Error::TooLarge { .. } | Error::Decode { .. } => {
                Failure::Permanent
            }
            _ => Failure::Attempt,
        }
    }
}

/// What became of one locked row.
enum Outcome {
    Done(i64),
    /// Delivered to a destination that keeps no record of delivered rows.
    Deleted(i64),
    Failed {
        seq: i64,
        attempts: i32,
        error: String,
        failure: Failure,
    },
}

impl Outcome {
    fn failed(seq: i64, attempts: i32, error: &Error) -> Outcome {
        Outcome::Failed {
            seq,
            attempts,
            error: error.to_string(),
            failure: Failure::of(error),
        }
    }
}

impl Relay {
    /// One pass: lock a batch, deliver it, mark it, commit.
    #[tracing::instrument(name = "reposmith.outbox.relay", skip_all, fields(taken, delivered))]
    pub async fn relay_once(&self) -> Result<RelayReport> {
        let unit = self.backend.begin().await?;
        let (taken, report) = {
            let mut connection = unit.connection().await?;
            let (rows, mut outcomes) = self.take_batch(&mut connection).await?;
            drop(connection);
            outcomes.extend(self.deliver_all(&rows).await);
            let mut connection = unit.connection().await?;
            (outcomes.len(), self.mark(&mut connection, &outcomes).await?)
        };
        unit.commit().await?;
        let report = RelayReport {
            taken,
            // A full batch that delivered nothing is a stuck destination, not
            // a backlog: the run loop waits before trying again.
            full: taken >= self.options.batch_size as usize && report.delivered > 0,
            ..report
        };
        tracing::Span::current()
            .record("taken", report.taken)
            .record("delivered", report.delivered);
        Ok(report)
    }

    /// Locks the due rows this relay routes, skipping rows other relays hold
    /// and ordered destinations another relay is delivering. Rows that do
    /// not decode come back as failed outcomes (dead at once).
    async fn take_batch(
        &self,
        connection: &mut PgConnection,
    ) -> Result<(Vec<OutboxMessage>, Vec<Outcome>)> {
        let idle = self.options.publish_timeout + Duration::from_secs(30);
        let query = sqlx::query(IDLE_SQL).bind(format!("{}ms", idle.as_millis()));
        self.bounded(query.execute(&mut *connection)).await?;
        let (mut unordered, mut ordered, mut busy) = (Vec::new(), Vec::new(), Vec::new());
        for (stored, destination) in &self.routes {
            if !destination.ordered() {
                unordered.push(stored.clone());
            } else if self.try_lock(connection, stored).await? {
                ordered.push(stored.clone());
            } else {
                busy.push(stored.clone());
            }
        }
        let queues = match &self.queues {
            None => false,
            Some(queues) if queues.ordered() => self.try_lock(connection, "queue:*").await?,
            Some(_) => true,
        };
        let routed: Vec<String> = unordered
            .into_iter()
            .chain(ordered.iter().cloned())
            .collect();
        let select = sqlx::query(SELECT_SQL)
            .bind(&routed)
            .bind(queues)
            .bind(&ordered)
            .bind(i64::from(self.options.batch_size))
            .bind(&busy)
            .fetch_all(&mut *connection);
        let rows = self.bounded(select).await?;
        let mut messages = Vec::with_capacity(rows.len());
        let mut broken = Vec::new();
        for row in &rows {
            match message_of(row) {
                Ok(message) => messages.push(message),
                Err((seq, error)) => broken.push(Outcome::failed(seq, 0, &error)),
            }
        }
        Ok((messages, broken))
    }

    async fn try_lock(&self, connection: &mut PgConnection, key: &str) -> Result<bool> {
        let query = sqlx::query_scalar(LOCK_SQL).bind(format!("reposmith_outbox:{key}"));
        self.bounded(query.fetch_one(connection)).await
    }

    /// Delivers each destination's rows, destinations side by side.
    async fn deliver_all(&self, messages: &[OutboxMessage]) -> Vec<Outcome> {
        let mut groups: BTreeMap<String, Vec<&OutboxMessage>> = BTreeMap::new();
        for message in messages {
            let key = message.destination.to_string();
            groups.entry(key).or_default().push(message);
        }
        let deliveries = groups.into_values().filter_map(|group| {
            let destination = self.route_of(&group[0].destination)?;
            Some(self.deliver_group(destination, group))
        });
        join_all(deliveries).await.into_iter().flatten().collect()
    }

    /// Delivers one destination's rows under the publish deadline. A panic
    /// in the destination fails its rows instead of the relay. For an
    /// ordered destination nothing after its first failure is marked.
    async fn deliver_group(
        &self,
        destination: Arc<dyn Deliver>,
        group: Vec<&OutboxMessage>,
    ) -> Vec<Outcome> {
        let messages: Vec<OutboxMessage> = group.into_iter().cloned().collect();
        let results = self.deliver_guarded(destination.as_ref(), &messages).await;
        let keep = destination.keep_delivered();
        let mut outcomes = Vec::with_capacity(messages.len());
        for (message, result) in messages.iter().zip(results) {
            match result {
                Ok(()) if keep => outcomes.push(Outcome::Done(message.seq)),
                Ok(()) => outcomes.push(Outcome::Deleted(message.seq)),
                Err(error) => {
                    tracing::warn!(message = %message.id, destination = %message.destination,
                        attempt = message.attempts + 1, %error, "outbox delivery failed");
                    outcomes.push(Outcome::failed(message.seq, message.attempts, &error));
                    if destination.ordered() {
                        break;
                    }
                }
            }
        }
        outcomes
    }

    /// One outcome per message: the destination's own, or the same error
    /// for all of them when it timed out, panicked or miscounted.
    async fn deliver_guarded(
        &self,
        destination: &dyn Deliver,
        messages: &[OutboxMessage],
    ) -> Vec<Result<()>> {
        let timeout = self.options.publish_timeout;
        let delivery = AssertUnwindSafe(destination.deliver(messages)).catch_unwind();
        let failed = match tokio::time::timeout(timeout, delivery).await {
            Ok(Ok(results)) if results.len() == messages.len() => return results,
            Ok(Ok(results)) => Some(format!(
                "the destination answered {} outcomes for {} messages",
                results.len(),
                messages.len()
            )),
            Ok(Err(_panic)) => Some("the destination panicked".to_owned()),
            Err(_) => None,
        };
        let error = || match &failed {
            Some(reason) => Error::config("outbox", reason.clone()),
            None => Error::Timeout {
                backend: Backend::Postgres,
                operation: "outbox delivery",
                after: timeout,
            },
        };
        messages.iter().map(|_| Err(error())).collect()
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
                _ => None,
            })
            .collect();
        let deleted: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Deleted(seq) => Some(*seq),
                _ => None,
            })
            .collect();
        report.delivered = done.len() + deleted.len();
        for (sql, seqs) in [(DONE_SQL, &done), (DELETE_SQL, &deleted)] {
            if !seqs.is_empty() {
                let query = sqlx::query(sql).bind(seqs);
                self.bounded(query.execute(&mut *connection)).await?;
            }
        }
        let failed: Vec<(i64, String, i64, i16)> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Done(_) | Outcome::Deleted(_) => None,
                Outcome::Failed {
                    seq,
                    attempts,
                    error,
                    failure,
                } => Some((
                    *seq,
                    error.clone(),
                    self.delay_ms(*attempts, *failure),
                    *failure as i16,
                )),
            })
            .collect();
        if failed.is_empty() {
            return Ok(report);
        }
        let query = sqlx::query_scalar::<_, String>(FAILED_SQL)
            .bind(failed.iter().map(|f| f.0).collect::<Vec<_>>())
            .bind(failed.iter().map(|f| f.1.clone()).collect::<Vec<_>>())
            .bind(failed.iter().map(|f| f.2).collect::<Vec<_>>())
            .bind(i32::try_from(self.options.max_attempts).unwrap_or(i32::MAX))
            .bind(failed.iter().map(|f| f.3).collect::<Vec<_>>())
            .fetch_all(&mut *connection);
        let states = self.bounded(query).await?;
        report.dead = states.iter().filter(|s| *s == STATE_DEAD).count();
        report.retried = states.len() - report.dead;
        Ok(report)
    }

    /// The wait before a failed row is offered again: the poll interval for
    /// an unreachable destination, the retry backoff otherwise.
    fn delay_ms(&self, attempts: i32, failure: Failure) -> i64 {
        let delay = match failure {
            Failure::Unreachable => self.options.poll_interval,
            Failure::Attempt | Failure::Permanent => {
                let attempt = u32::try_from(attempts).unwrap_or(0) + 1;
                self.options.retry.backoff(attempt)
            }
        };
        i64::try_from(delay.min(MAX_DELAY).as_millis()).unwrap_or(i64::MAX)
    }

    /// Runs one statement of the pass under the backend's statement timeout
    /// (30 s when it has none) plus a margin, so a silent network partition
    /// ends the pass instead of hanging it. A missing outbox table is named.
    pub(super) async fn bounded<T>(
        &self,
        statement: impl Future<Output = std::result::Result<T, sqlx::Error>>,
    ) -> Result<T> {
        let deadline = self
            .backend
            .statement_timeout()
            .unwrap_or(Duration::from_secs(30))
            + Duration::from_secs(5);
        match tokio::time::timeout(deadline, statement).await {
            Ok(result) => result.map_err(|e| crate::outbox::write_error(&self.backend, e)),
            Err(_) => Err(Error::Timeout {
                backend: Backend::Postgres,
                operation: "an outbox relay statement",
                after: deadline,
            }),
        }
    }
}

/// The message in a locked row, or its `seq` and why it does not decode.
fn message_of(row: &PgRow) -> std::result::Result<OutboxMessage, (i64, Error)> {
    let seq: i64 = row
        .try_get("seq")
        .map_err(|e| (0, super::super::undecodable(e)))?;
    let decoded = (|| {
        let decode = super::super::undecodable;
        let id: Uuid = row.try_get("id").map_err(decode)?;
        let destination: String = row.try_get("destination").map_err(decode)?;
        let payload: serde_json::Value = row.try_get("payload").map_err(decode)?;
        let created_at: DateTime<Utc> = row.try_get("created_at").map_err(decode)?;
        let tenant: Option<String> = row.try_get("tenant").map_err(decode)?;
        let tenant = tenant.map(reposmith_core::Tenant::new).transpose()?;
        let destination = Destination::parse(&destination)?;
        let mut message =
            OutboxMessage::new(seq, id, destination, payload, created_at).with_tenant(tenant);
        message.attempts = row.try_get("attempts").map_err(decode)?;
        Ok::<_, Error>(message)
    })();
    decoded.map_err(|error| (seq, error))
}
