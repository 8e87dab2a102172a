//! Background jobs, written once and carried by either road to a worker:
//! straight onto a queue (`Queue::enqueue` in `reposmith-redis`), or through
//! the transactional outbox of a unit of work (`enqueue` on a PostgreSQL
//! unit), which the relay moves onto the queue after COMMIT.
//!
//! Both roads produce the same [`JobEnvelope`]: the job's serialized payload
//! and the settings the queue runs it with (attempts, backoff, timeout,
//! priority, idempotency key, start time). Validation happens here, once,
//! before anything reaches a database or Redis.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;
use crate::tenant::Tenant;
use crate::{Error, Result};

/// The longest queue or topic name (names become parts of Redis keys).
pub const MAX_NAME_LEN: usize = 64;

/// The largest serialized job payload accepted by default (512 KiB): a job
/// carries ids and small parameters; a document belongs in a table.
pub const DEFAULT_MAX_PAYLOAD: usize = 512 * 1024;

/// The lowest-priority value a job may have; `0` runs first.
pub const MAX_PRIORITY: u16 = 1000;

/// A job a worker runs: a serde payload plus the settings of its queue.
///
/// ```
/// use std::time::Duration;
/// use reposmith_core::job::Job;
/// use reposmith_core::RetryPolicy;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct EmbedChunk { chunk_id: i64 }
///
/// impl Job for EmbedChunk {
///     const QUEUE: &'static str = "embed";
///     const RETRY: RetryPolicy =
///         RetryPolicy::new(8, Duration::from_secs(2), Duration::from_secs(600));
///     fn idempotency_key(&self) -> Option<String> {
///         Some(format!("embed-chunk-{}", self.chunk_id))
///     }
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The queue's name: 1 to 64 of `A-Z a-z 0-9 _ - .`.
    const QUEUE: &'static str;

    /// Attempts in all (the first included) and the backoff between them:
    /// a failed attempt runs again after a random wait in
    /// `[0, min(max_delay, base_delay · 2^(attempt-1))]` (full jitter). After
    /// the last attempt the job goes to the dead-letter set.
    const RETRY: RetryPolicy =
        RetryPolicy::new(5, Duration::from_secs(1), Duration::from_secs(300));

    /// How long one attempt may run; the worker cancels the handler after it
    /// and counts a failed attempt.
    const TIMEOUT: Duration = Duration::from_secs(300);

    /// Priority of this job: `0` (the default) runs first, up to
    /// [`MAX_PRIORITY`]; equal priorities run in enqueue order.
    fn priority(&self) -> u16 {
        0
    }

    /// A key naming this job's effect ("embed chunk 42"): a second job with
    /// the same key enqueued while the first is still pending (waiting,
    /// delayed or running; at most the queue's dedup window) is dropped.
    fn idempotency_key(&self) -> Option<String> {
        None
    }
}

/// When a job may start. Times are read on the queue server's clock (the
/// Redis `TIME`), never the application's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// As soon as a worker is free.
    #[default]
    Now,
    /// This many milliseconds after the queue server receives the job.
    AfterMillis(u64),
    /// At this Unix time in milliseconds, on the queue server's clock.
    UnixMillis(u64),
}

/// A job ready for a queue: its payload and the settings it runs with.
///
/// Built by [`JobEnvelope::of`], which validates everything a queue or the
/// outbox table would otherwise reject later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobEnvelope {
    /// The queue's name.
    pub queue: String,
    /// The job, serialized as JSON text.
    pub payload: String,
    /// Attempts in all.
    pub max_attempts: u32,
    /// First backoff, in milliseconds.
    pub backoff_base_ms: u64,
    /// Cap on the backoff, in milliseconds.
    pub backoff_max_ms: u64,
    /// Longest run of one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// `0` runs first.
    pub priority: u16,
    /// The idempotency key, if the job has one.
    pub key: Option<String>,
    /// When it may start.
    #[serde(default)]
    pub start: StartAt,
    /// The tenant the job was enqueued for (from a tenant's queue handle,
    /// or a unit of work opened for a tenant, through the outbox); the
    /// worker hands it to the handler, which opens `store.for_tenant(..)`
    /// with it. `None` for a job of no tenant, and for envelopes written
    /// before jobs carried tenants (the field is then absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Tenant>,
}

impl JobEnvelope {
    /// Serializes `job` with its queue's settings, refusing a bad queue name,
    /// a priority out of range, an empty or oversized idempotency key, or a
    /// payload larger than `max_payload` bytes.
    pub fn of<J: Job>(job: &J, max_payload: usize) -> Result<JobEnvelope> {
        validate_name("queue", J::QUEUE)?;
        let payload = serde_json::to_string(job).map_err(|e| {
            Error::invalid(
                "job",
                J::QUEUE,
                format!("the job does not serialize as JSON: {e}"),
            )
        })?;
        let envelope = JobEnvelope {
            queue: J::QUEUE.to_owned(),
            payload,
            max_attempts: J::RETRY.max_attempts,
            backoff_base_ms: millis(J::RETRY.base_delay),
            backoff_max_ms: millis(J::RETRY.max_delay),
            timeout_ms: millis(J::TIMEOUT).max(1),
            priority: job.priority(),
            key: job.idempotency_key(),
            start: StartAt::Now,
            tenant: None,
        };
        envelope.validate(max_payload)?;
        Ok(envelope)
    }

    /// Sets when the job may start.
    pub fn starting(mut self, start: StartAt) -> JobEnvelope {
        self.start = start;
        self
    }

    /// Sets the tenant the job runs for (`None`: no tenant).
    pub fn for_tenant(mut self, tenant: Option<Tenant>) -> JobEnvelope {
        self.tenant = tenant;
        self
    }

    /// Checks every field, as [`of`](Self::of) does; for envelopes read back
    /// from storage.
    pub fn validate(&self, max_payload: usize) -> Result<()> {
        validate_name("queue", &self.queue)?;
        if self.payload.len() > max_payload {
            return Err(Error::TooLarge {
                what: format!("payload of a job for queue {}", self.queue),
                size: self.payload.len(),
                limit: max_payload,
            });
        }
        if self.priority > MAX_PRIORITY {
            return Err(Error::invalid(
                "job",
                "priority",
                format!("{} is above the largest, {MAX_PRIORITY}", self.priority),
            ));
        }
        if self.max_attempts == 0 {
            return Err(Error::invalid("job", "max_attempts", "must be at least 1"));
        }
        if let Some(key) = &self.key
            && (key.is_empty() || key.len() > 512)
        {
            return Err(Error::invalid(
                "job",
                "idempotency_key",
                format!("must be 1 to 512 bytes, got {}", key.len()),
            ));
        }
        Ok(())
    }

    /// The backoff before attempt `attempt + 1` after attempt `attempt`
    /// failed (full jitter).
    pub fn backoff(&self, attempt: u32) -> Duration {
        RetryPolicy::new(
            self.max_attempts,
            Duration::from_millis(self.backoff_base_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
        .backoff(attempt)
    }
}

/// Checks a queue or topic name: 1 to [`MAX_NAME_LEN`] of `A-Z a-z 0-9 _ - .`,
/// so it can be part of a Redis key or a destination without escaping.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(Error::invalid(
            "job",
            what,
            format!(
                "{name:?} is not a valid {what} name: use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ - ."
            ),
        ));
    }
    Ok(())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Embed {
        id: i64,
    }

    impl Job for Embed {
        const QUEUE: &'static str = "embed.v1";
        fn priority(&self) -> u16 {
            7
        }
    }

    #[derive(Serialize, Deserialize)]
    struct BadName;

    impl Job for BadName {
        const QUEUE: &'static str = "embed:*";
    }

    #[test]
    fn envelope_carries_the_settings() {
        let envelope = JobEnvelope::of(&Embed { id: 4 }, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(envelope.queue, "embed.v1");
        assert_eq!(envelope.payload, r#"{"id":4}"#);
        assert_eq!(envelope.max_attempts, 5);
        assert_eq!(envelope.priority, 7);
        assert_eq!(envelope.backoff_base_ms, 1000);
        let json = serde_json::to_string(&envelope).unwrap();
        let back: JobEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back, envelope);
    }

    #[test]
    fn tenants_round_trip_and_old_envelopes_still_read() {
        let acme = Tenant::new("acme").unwrap();
        let envelope = JobEnvelope::of(&Embed { id: 4 }, DEFAULT_MAX_PAYLOAD)
            .unwrap()
            .for_tenant(Some(acme.clone()));
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["tenant"], "acme");
        let back: JobEnvelope = serde_json::from_value(json).unwrap();
        assert_eq!(back.tenant, Some(acme));
        // An envelope written before jobs carried tenants.
        let old = r#"{"queue":"embed.v1","payload":"{\"id\":4}","max_attempts":5,
            "backoff_base_ms":1000,"backoff_max_ms":300000,"timeout_ms":300000,
            "priority":7,"key":null,"start":"now"}"#;
        let old: JobEnvelope = serde_json::from_str(old).unwrap();
        assert_eq!(old.tenant, None);
        let untenanted = serde_json::to_value(&old).unwrap();
        assert!(untenanted.get("tenant").is_none(), "no tenant, no field");
        let bad = r#"{"queue":"q","payload":"1","max_attempts":1,"backoff_base_ms":1,
            "backoff_max_ms":1,"timeout_ms":1,"priority":0,"key":null,"tenant":""}"#;
        assert!(serde_json::from_str::<JobEnvelope>(bad).is_err());
    }

    #[test]
    fn bad_names_and_sizes_are_refused() {
        let err = JobEnvelope::of(&BadName, DEFAULT_MAX_PAYLOAD).unwrap_err();
        assert!(err.to_string().contains("embed:*"), "{err}");
        let err = JobEnvelope::of(&Embed { id: 1 }, 4).unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 4, .. }), "{err}");
        for name in ["", "a b", "{x}", "é", &"q".repeat(65)] {
            assert!(validate_name("queue", name).is_err(), "{name:?}");
        }
        validate_name("queue", "embed-chunks_v2.high").unwrap();
    }

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let envelope = JobEnvelope::of(&Embed { id: 1 }, DEFAULT_MAX_PAYLOAD).unwrap();
        for attempt in 1..20 {
            assert!(envelope.backoff(attempt) <= Duration::from_secs(300));
        }
        assert!(envelope.backoff(1) <= Duration::from_secs(1));
    }
}
