//! [`Outbox::redeliver_unreceipted`]: sends again the recent queue messages
//! whose job left no receipt, for a destination that acknowledged a job and
//! then lost it (a Redis failover that dropped writes its replica never
//! received).

use std::time::Duration;

use reposmith_core::Result;

use super::Outbox;

/// Done queue rows delivered within the window whose job has no receipt
/// (the receipt key is `<queue>:<message id>`, as
/// [`Receipt::for_job`](super::Receipt::for_job) builds it: the message id
/// is the job id) go back to pending.
const REDELIVER_SQL: &str = "UPDATE reposmith_outbox AS o \
     SET state = 'pending', available_at = now() \
     WHERE o.state = 'done' AND o.destination LIKE 'queue:%' \
       AND o.done_at >= now() - $1 * interval '1 millisecond' \
       AND NOT EXISTS (SELECT 1 FROM reposmith_job_receipts AS r \
         WHERE r.key = (o.payload->>'queue') || ':' || o.id::text)";

impl Outbox {
    /// Marks the queue messages delivered within the last `within` whose
    /// job has no receipt yet as pending again, so the relay delivers them
    /// again; returns how many. For queues whose handlers record their
    /// effects with [`PgBackend::run_once`](crate::PgBackend::run_once) and
    /// [`Receipt::for_job`](super::Receipt::for_job).
    ///
    /// Run it after a Redis failover, with `within` covering the time
    /// before the failover in which acknowledged writes may not have
    /// reached the replica (a few seconds is plenty; replication lags by
    /// milliseconds), once the queue has had time to run what it holds.
    ///
    /// Duplicates: a redelivered job that Redis still holds (queued,
    /// running, or done and still inside the queue's dedup window) is
    /// dropped by the queue as a duplicate of its message id. A job that
    /// was lost is lost with its id marker (one script wrote both), so it is
    /// enqueued again. A job that completes between this call and the
    /// relay's delivery is dropped the same way, or, past the dedup window,
    /// runs again and finds its receipt. So `within` must stay well inside
    /// the queue's dedup window (24 h by default). A job whose handler
    /// records no receipt is redelivered on every call (and dropped as a
    /// duplicate): keep this to queues that record receipts.
    pub async fn redeliver_unreceipted(&self, within: Duration) -> Result<u64> {
        let backend = self.backend();
        let millis = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        let query = sqlx::query(REDELIVER_SQL).bind(millis);
        let redelivered = backend
            .on_pool(|held| Box::pin(query.execute(&mut **held)))
            .await?
            .rows_affected();
        if redelivered > 0 {
            super::wake_relays(backend).await;
        }
        Ok(redelivered)
    }
}
