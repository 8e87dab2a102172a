//! [`DeadLetters`]: the jobs that ran out of attempts, failed fatally or
//! could not be read; list them, run them again, or delete them.

use std::fmt;

use chrono::{DateTime, Utc};
use reposmith_core::job::Job;
use reposmith_core::{Error, Result};
use uuid::Uuid;

use super::ops::{self, PURGE_BATCH};
use super::producer::Queue;

/// Longest page [`DeadLetters::list`] returns.
pub const MAX_DEAD_PAGE: usize = 1000;

/// The most purge calls [`DeadLetters::purge_all`] makes (each deletes up
/// to 1,000 jobs): the loop is bounded even while workers keep adding.
const MAX_PURGE_CALLS: usize = 100_000;

/// A job in the dead-letter set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The job's id.
    pub id: Uuid,
    /// The job as stored (JSON text), which may not deserialize.
    pub payload: String,
    /// Attempts started.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When it was dead-lettered (Redis server clock).
    pub died_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The payload read as `J`.
    pub fn job<J: Job>(&self) -> Result<J> {
        serde_json::from_str(&self.payload).map_err(|e| {
            Error::invalid(
                "job",
                "payload",
                format!("dead job {} does not deserialize: {e}", self.id),
            )
        })
    }
}

/// The dead-letter set of one queue, from [`Queue::dead_letters`].
pub struct DeadLetters<J: Job> {
    queue: Queue<J>,
}

impl<J: Job> fmt::Debug for DeadLetters<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetters")
            .field("queue", &self.queue.name())
            .finish()
    }
}

impl<J: Job> DeadLetters<J> {
    pub(crate) fn new(queue: Queue<J>) -> DeadLetters<J> {
        DeadLetters { queue }
    }

    /// Up to `limit` (at most [`MAX_DEAD_PAGE`]) dead jobs, newest first,
    /// skipping the first `offset`.
    pub async fn list(&self, offset: usize, limit: usize) -> Result<Vec<DeadLetter>> {
        let limit = limit.min(MAX_DEAD_PAGE);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.queue.backend.connection();
        let rows = ops::dead_page(&mut conn, &self.queue.keys, offset, limit)
            .await
            .map_err(|e| self.queue.backend.map_error(&e))?;
        Ok(rows
            .into_iter()
            .map(|row| DeadLetter {
                id: row.id,
                payload: row.payload,
                attempts: row.attempts,
                last_error: row.last_error,
                died_at: DateTime::from_timestamp_millis(row.died_at_ms).unwrap_or_default(),
            })
            .collect())
    }

    /// Moves dead job `id` back to the queue with its attempts reset; false
    /// when no such job is dead.
    pub async fn replay(&self, id: Uuid) -> Result<bool> {
        let mut conn = self.queue.backend.connection();
        let replayed = ops::replay(&mut conn, &self.queue.keys, id)
            .await
            .map_err(|e| self.queue.backend.map_error(&e))?;
        if replayed {
            tracing::info!(queue = %self.queue.name(), job.id = %id, "dead job replayed");
        }
        Ok(replayed)
    }

    /// Deletes dead job `id`; false when no such job is dead.
    pub async fn purge(&self, id: Uuid) -> Result<bool> {
        let mut conn = self.queue.backend.connection();
        let purged = ops::purge(&mut conn, &self.queue.keys, Some(id))
            .await
            .map_err(|e| self.queue.backend.map_error(&e))?;
        Ok(purged > 0)
    }

    /// Deletes every dead job, in calls of up to 1,000; returns how many.
    pub async fn purge_all(&self) -> Result<u64> {
        let mut conn = self.queue.backend.connection();
        let mut total = 0;
        for _ in 0..MAX_PURGE_CALLS {
            let purged = ops::purge(&mut conn, &self.queue.keys, None)
                .await
                .map_err(|e| self.queue.backend.map_error(&e))?;
            total += purged;
            if purged < u64::from(PURGE_BATCH) {
                break;
            }
        }
        tracing::info!(queue = %self.queue.name(), purged = total, "dead jobs purged");
        Ok(total)
    }
}
