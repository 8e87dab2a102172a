//! [`QueueStats`]: how many jobs sit in each state, and the queue's
//! lifetime counters.

use std::collections::HashMap;

use reposmith_core::Result;

use super::keys::QueueKeys;
use crate::RedisBackend;

/// A snapshot of one queue, read in one round trip (`MULTI`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Jobs ready to run.
    pub waiting: u64,
    /// Jobs waiting for their start time or their retry backoff.
    pub delayed: u64,
    /// Jobs leased to a worker.
    pub active: u64,
    /// Jobs in the dead-letter set.
    pub dead: u64,
    /// Jobs accepted since the queue's keys were created.
    pub enqueued: u64,
    /// Jobs dropped at enqueue as duplicates (same id or idempotency key).
    pub deduped: u64,
    /// Jobs completed (acknowledged with a valid lease).
    pub completed: u64,
    /// Failed attempts that were scheduled to run again.
    pub retried: u64,
    /// Jobs moved to the dead-letter set.
    pub dead_lettered: u64,
    /// Leases that expired and were reclaimed (a worker died, stalled or
    /// lost its connection).
    pub redelivered: u64,
}

/// Reads the counts of `keys`' queue.
pub(crate) async fn read_stats(backend: &RedisBackend, keys: &QueueKeys) -> Result<QueueStats> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for set in ["wait", "delayed", "active", "dead"] {
        pipe.zcard(keys.key(set));
    }
    pipe.hgetall(keys.key("stats"));
    let (waiting, delayed, active, dead, counters): (u64, u64, u64, u64, HashMap<String, u64>) =
        pipe.query_async(&mut backend.connection())
            .await
            .map_err(|e| backend.map_error(&e))?;
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    Ok(QueueStats {
        waiting,
        delayed,
        active,
        dead,
        enqueued: counter("enqueued"),
        deduped: counter("deduped"),
        completed: counter("completed"),
        retried: counter("retried"),
        dead_lettered: counter("dead"),
        redelivered: counter("redelivered"),
    })
}
