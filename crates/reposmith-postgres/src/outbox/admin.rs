//! [`Outbox`]: what is waiting, what died and why, replay and purge.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reposmith_core::Result;
use reposmith_core::outbox::Destination;
use sqlx::Row;
use uuid::Uuid;

use crate::PgBackend;

/// Done rows (or receipts) deleted per statement by a purge, so a purge
/// never holds long locks or builds a huge transaction.
const PURGE_BATCH: i64 = 5_000;

/// Inspection and maintenance of the outbox table.
#[derive(Debug, Clone)]
pub struct Outbox {
    backend: PgBackend,
}

/// Row counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxStats {
    /// Waiting for a relay (including rows waiting for a retry).
    pub pending: i64,
    /// Delivered and not yet purged.
    pub done: i64,
    /// Given up on; see [`Outbox::dead`].
    pub dead: i64,
}

/// A row the relay gave up on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadMessage {
    /// The message id.
    pub id: Uuid,
    /// Where it was going.
    pub destination: Destination,
    /// Deliveries tried.
    pub attempts: i32,
    /// The last delivery's error.
    pub last_error: Option<String>,
    /// When its unit committed it.
    pub created_at: DateTime<Utc>,
    /// What it carries.
    pub payload: serde_json::Value,
    /// The tenant of the unit that recorded it (as stored: the setting's
    /// text), if any.
    pub tenant: Option<String>,
}

impl Outbox {
    /// The outbox of `backend`.
    pub fn new(backend: &PgBackend) -> Outbox {
        Outbox {
            backend: backend.clone(),
        }
    }

    /// The backend this outbox is on.
    pub(crate) fn backend(&self) -> &PgBackend {
        &self.backend
    }

    /// Counts rows by state.
    pub async fn stats(&self) -> Result<OutboxStats> {
        let query = sqlx::query("SELECT state, count(*) FROM reposmith_outbox GROUP BY state");
        let rows = self
            .backend
            .on_pool(|held| Box::pin(query.fetch_all(&mut **held)))
            .await?;
        let mut stats = OutboxStats::default();
        for row in rows {
            let state: String = row.get(0);
            let count: i64 = row.get(1);
            match state.as_str() {
                "pending" => stats.pending = count,
                "done" => stats.done = count,
                "dead" => stats.dead = count,
                _ => {}
            }
        }
        Ok(stats)
    }

    /// Up to `limit` dead rows, oldest first.
    pub async fn dead(&self, limit: u32) -> Result<Vec<DeadMessage>> {
        let query = sqlx::query(
            "SELECT id, destination, attempts, last_error, created_at, payload, tenant \
             FROM reposmith_outbox WHERE state = 'dead' ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit));
        let rows = self
            .backend
            .on_pool(|held| Box::pin(query.fetch_all(&mut **held)))
            .await?;
        rows.iter().map(dead_of).collect()
    }

    /// Sends dead row `id` again, with its attempts reset; false when no
    /// dead row has that id.
    pub async fn replay(&self, id: Uuid) -> Result<bool> {
        let query = sqlx::query(
            "UPDATE reposmith_outbox SET state = 'pending', attempts = 0, available_at = now() \
             WHERE id = $1 AND state = 'dead'",
        )
        .bind(id);
        let replayed = self
            .backend
            .on_pool(|held| Box::pin(query.execute(&mut **held)))
            .await?;
        if replayed.rows_affected() > 0 {
            super::wake_relays(&self.backend).await;
        }
        Ok(replayed.rows_affected() > 0)
    }

    /// Deletes done rows delivered more than `older_than` ago, in batches;
    /// returns how many.
    pub async fn purge_done(&self, older_than: Duration) -> Result<u64> {
        self.purge(
            "DELETE FROM reposmith_outbox WHERE seq IN (SELECT seq FROM reposmith_outbox \
             WHERE state = 'done' AND done_at < now() - $1 * interval '1 millisecond' LIMIT $2)",
            older_than,
        )
        .await
    }

    /// Deletes job receipts older than `older_than` (keep them longer than
    /// any job can be redelivered); returns how many.
    pub async fn purge_receipts(&self, older_than: Duration) -> Result<u64> {
        self.purge(
            "DELETE FROM reposmith_job_receipts WHERE key IN (SELECT key FROM \
             reposmith_job_receipts WHERE done_at < now() - $1 * interval '1 millisecond' \
             LIMIT $2)",
            older_than,
        )
        .await
    }

    async fn purge(&self, sql: &'static str, older_than: Duration) -> Result<u64> {
        let millis = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let mut total = 0;
        loop {
            let query = sqlx::query(sql).bind(millis).bind(PURGE_BATCH);
            let deleted = self
                .backend
                .on_pool(|held| Box::pin(query.execute(&mut **held)))
                .await?
                .rows_affected();
            total += deleted;
            if deleted < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

fn dead_of(row: &sqlx::postgres::PgRow) -> Result<DeadMessage> {
    let decode = super::undecodable;
    let destination: String = row.try_get("destination").map_err(decode)?;
    Ok(DeadMessage {
        id: row.try_get("id").map_err(decode)?,
        destination: Destination::parse(&destination)?,
        attempts: row.try_get("attempts").map_err(decode)?,
        last_error: row.try_get("last_error").map_err(decode)?,
        created_at: row.try_get("created_at").map_err(decode)?,
        payload: row.try_get("payload").map_err(decode)?,
        tenant: row.try_get("tenant").map_err(decode)?,
    })
}
