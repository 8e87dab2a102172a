//! [`Queue`]: enqueueing jobs of one type, and reading the queue's state.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reposmith_core::job::{DEFAULT_MAX_PAYLOAD, Job, JobEnvelope, StartAt};
use reposmith_core::{Error, IntoTenant, Result, Tenant};
use uuid::Uuid;

use super::dead::DeadLetters;
use super::keys::QueueKeys;
use super::ops::{self, Ids};
use super::stats::{QueueStats, read_stats};
use crate::RedisBackend;

/// Settings of a [`Queue`] handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueOptions {
    /// How long an enqueued job's id is remembered: a second job with it
    /// within this window is dropped as a duplicate. An idempotency key is
    /// held as long as its job is pending, at most this long.
    /// Default 24 hours. Each enqueued job leaves a small marker key (about
    /// a hundred bytes) for this long, and one more per idempotency key:
    /// size the window to the throughput and to the longest redelivery the
    /// producers (an outbox relay) may make.
    pub dedup_window: Duration,
    /// The largest serialized payload accepted, in bytes. Default
    /// [`DEFAULT_MAX_PAYLOAD`] (512 KiB).
    pub max_payload: usize,
    /// Replicas that must hold an enqueue before it is acknowledged, and the
    /// longest wait for them (`WAIT`); `None` (the default) acknowledges
    /// once the master has it. See [`replicas_ack`](Self::replicas_ack).
    pub replicas_ack: Option<(u32, Duration)>,
    /// The key prefix: the queue's keys live under the hash tag
    /// `{<prefix>:q:<name>}`. Default `reposmith`; a test gives each test
    /// its own (what `#[reposmith::test]` does), so parallel tests never
    /// share a queue. 1 to 64 of `A-Z a-z 0-9 . _ -`, checked when a
    /// [`Queue`] is made. Producers and workers of one queue must agree.
    pub prefix: String,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            dedup_window: Duration::from_secs(24 * 3600),
            max_payload: DEFAULT_MAX_PAYLOAD,
            replicas_ack: None,
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

/// The key prefix of queues unless [`QueueOptions::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "reposmith";

impl QueueOptions {
    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`dedup_window`](Self::dedup_window) (at least 1 ms).
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window.max(Duration::from_millis(1));
        self
    }

    /// Sets [`max_payload`](Self::max_payload).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Acknowledges an enqueue only once `replicas` replicas of the queue's
    /// master hold it (`WAIT replicas timeout` after each enqueue call,
    /// `timeout` at least 1 ms).
    ///
    /// Redis replicates asynchronously: a master that dies right after
    /// acknowledging a write may take it along, and the replica promoted in
    /// its place never saw it. With this setting an enqueue that no replica
    /// confirmed in time fails with [`Error::Unavailable`] (code
    /// `NOREPLICAS`), although the master may have kept it; a retry is a
    /// duplicate within the dedup window and is dropped, so the outbox
    /// relay, which retries unavailable destinations without counting an
    /// attempt, marks a row done only once a replica has its job.
    ///
    /// The cost: one more round trip per enqueue call, as long as the
    /// replica needs to confirm; and while a master has fewer live replicas
    /// than `replicas` (after a failover, until the old master returns as a
    /// replica), every enqueue on its slots fails after `timeout`. A
    /// replica's copy is still not on its disk when confirmed: a master and
    /// its replica lost together lose it.
    pub fn replicas_ack(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas_ack = Some((replicas, timeout.max(Duration::from_millis(1))));
        self
    }
}

/// The result of enqueueing one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Enqueued {
    /// The job's id; for a duplicate, the id of the job enqueued before it
    /// (the one with the same id or idempotency key).
    pub id: Uuid,
    /// True when the job was dropped as a duplicate.
    pub duplicate: bool,
}

/// The queue of jobs of type `J` (named by [`Job::QUEUE`]): enqueue, read
/// counts, manage dead letters. Cheap to clone; clones share the backend's
/// connection.
pub struct Queue<J: Job> {
    pub(crate) backend: RedisBackend,
    pub(crate) keys: Arc<QueueKeys>,
    pub(crate) options: QueueOptions,
    /// The tenant every job enqueued through this handle carries
    /// ([`Queue::for_tenant`]).
    tenant: Option<Tenant>,
    job: PhantomData<fn() -> J>,
}

impl<J: Job> Clone for Queue<J> {
    fn clone(&self) -> Self {
        Queue {
            backend: self.backend.clone(),
            keys: Arc::clone(&self.keys),
            options: self.options.clone(),
            tenant: self.tenant.clone(),
            job: PhantomData,
        }
    }
}

impl<J: Job> fmt::Debug for Queue<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.keys.name)
            .field("backend", &self.backend)
            .field("options", &self.options)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl<J: Job> Queue<J> {
    /// The queue for `J` on `backend` with the default [`QueueOptions`];
    /// refuses an invalid queue name before talking to Redis.
    pub fn new(backend: &RedisBackend) -> Result<Queue<J>> {
        Queue::with_options(backend, QueueOptions::default())
    }

    /// The queue for `J` on `backend` with `options`.
    pub fn with_options(backend: &RedisBackend, options: QueueOptions) -> Result<Queue<J>> {
        Ok(Queue {
            backend: backend.clone(),
            keys: Arc::new(QueueKeys::new(&options.prefix, J::QUEUE)?),
            options,
            tenant: None,
            job: PhantomData,
        })
    }

    /// This queue for `tenant`: every job enqueued through the handle
    /// carries the tenant, and the worker hands it to the handler
    /// ([`JobContext::tenant`](super::JobContext::tenant)), which opens
    /// `store.for_tenant(..)` with it. The tenant is checked first (see
    /// [`Tenant`]). Jobs with one idempotency key dedupe per tenant: two
    /// tenants' jobs never drop each other. Workers serve every tenant's
    /// jobs of the queue: run them on the handle without a tenant.
    pub fn for_tenant(&self, tenant: impl IntoTenant) -> Result<Queue<J>> {
        let mut queue = self.clone();
        queue.tenant = Some(tenant.into_tenant()?);
        Ok(queue)
    }

    /// The tenant of this handle, if it is a tenant's ([`Queue::for_tenant`]).
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// The queue's name ([`Job::QUEUE`]).
    pub fn name(&self) -> &str {
        &self.keys.name
    }

    /// The backend this queue runs on.
    pub fn backend(&self) -> &RedisBackend {
        &self.backend
    }

    /// The options this handle enqueues with.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Enqueues `job` to run as soon as a worker is free.
    pub async fn enqueue(&self, job: &J) -> Result<Enqueued> {
        self.enqueue_starting(job, StartAt::Now).await
    }

    /// Enqueues `job` to run `delay` after Redis receives it (server clock).
    pub async fn enqueue_in(&self, job: &J, delay: Duration) -> Result<Enqueued> {
        let ms = ops::millis(delay);
        self.enqueue_starting(job, StartAt::AfterMillis(ms)).await
    }

    /// Enqueues `job` to run at `at`, read on the Redis server's clock; a
    /// time already past runs it now.
    pub async fn enqueue_at(&self, job: &J, at: DateTime<Utc>) -> Result<Enqueued> {
        let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        self.enqueue_starting(job, StartAt::UnixMillis(ms)).await
    }

    /// Enqueues `job` with an explicit start.
    pub async fn enqueue_starting(&self, job: &J, start: StartAt) -> Result<Enqueued> {
        let envelope = JobEnvelope::of(job, self.options.max_payload)?
            .starting(start)
            .for_tenant(self.tenant.clone());
        let mut added = self
            .enqueue_checked(&[(Uuid::now_v7(), envelope)], Ids::Fresh)
            .await?;
        added.pop().ok_or_else(no_answer)
    }

    /// Enqueues a prepared envelope under job id `id` (a relay passes the
    /// outbox message's id, so a second delivery is a duplicate). The
    /// envelope must be for this queue.
    pub async fn enqueue_envelope(&self, envelope: JobEnvelope, id: Uuid) -> Result<Enqueued> {
        let mut added = self.enqueue_envelopes(&[(id, envelope)]).await?;
        added.pop().ok_or_else(no_answer)
    }

    /// Enqueues many jobs to run now, in as few round trips as their sizes
    /// allow; one [`Enqueued`] per job, in order.
    pub async fn enqueue_many(&self, jobs: &[J]) -> Result<Vec<Enqueued>> {
        let prepared = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let envelope = JobEnvelope::of(job, self.options.max_payload)
                    .map_err(|e| e.at_row(i, jobs.len()))?;
                Ok((Uuid::now_v7(), envelope.for_tenant(self.tenant.clone())))
            })
            .collect::<Result<Vec<_>>>()?;
        self.enqueue_checked(&prepared, Ids::Fresh).await
    }

    /// Enqueues prepared envelopes under their ids, checked first (all for
    /// this queue, valid, within the payload limit, and on a tenant's
    /// handle of its tenant or none, which then gets it): nothing is sent
    /// when one is refused.
    pub async fn enqueue_envelopes(&self, jobs: &[(Uuid, JobEnvelope)]) -> Result<Vec<Enqueued>> {
        let Some(tenant) = &self.tenant else {
            return self.enqueue_checked(jobs, Ids::Caller).await;
        };
        let stamped = jobs
            .iter()
            .map(|(id, envelope)| {
                let envelope = envelope.clone();
                let tenant = envelope.tenant.clone().unwrap_or_else(|| tenant.clone());
                (*id, envelope.for_tenant(Some(tenant)))
            })
            .collect::<Vec<_>>();
        self.enqueue_checked(&stamped, Ids::Caller).await
    }

    /// Checks `jobs` (nothing is sent when one is refused), then enqueues them.
    async fn enqueue_checked(
        &self,
        jobs: &[(Uuid, JobEnvelope)],
        ids: Ids,
    ) -> Result<Vec<Enqueued>> {
        for (i, (_, envelope)) in jobs.iter().enumerate() {
            self.check_envelope(envelope)
                .map_err(|e| e.at_row(i, jobs.len()))?;
        }
        let refs: Vec<(Uuid, &JobEnvelope)> = jobs.iter().map(|(id, e)| (*id, e)).collect();
        let added = enqueue_batched(&self.backend, &self.keys, &self.options, &refs, ids)
            .await
            .map_err(|e| self.backend.map_error(&e))?;
        Ok(added
            .into_iter()
            .map(|a| Enqueued {
                id: a.id,
                duplicate: a.duplicate,
            })
            .collect())
    }

    fn check_envelope(&self, envelope: &JobEnvelope) -> Result<()> {
        if envelope.queue != self.keys.name {
            return Err(Error::invalid(
                "job",
                "queue",
                format!(
                    "the envelope is for queue {:?}, this is queue {:?}",
                    envelope.queue, self.keys.name
                ),
            ));
        }
        if let (Some(mine), Some(theirs)) = (&self.tenant, &envelope.tenant)
            && mine.setting() != theirs.setting()
        {
            return Err(Error::invalid(
                "job",
                "tenant",
                format!(
                    "the envelope is for tenant {:?}, this queue handle for tenant {:?}",
                    theirs.setting(),
                    mine.setting()
                ),
            ));
        }
        envelope.validate(self.options.max_payload)
    }

    /// Counts of waiting, delayed, running and dead jobs, and the queue's
    /// lifetime counters.
    pub async fn stats(&self) -> Result<QueueStats> {
        read_stats(&self.backend, &self.keys).await
    }

    /// The dead-letter set: list, replay, purge.
    pub fn dead_letters(&self) -> DeadLetters<J> {
        DeadLetters::new(self.clone())
    }
}

/// The error of an enqueue the script answered for no job.
fn no_answer() -> Error {
    Error::Backend {
        backend: reposmith_core::Backend::Redis,
        code: None,
        reason: "the enqueue script answered for no job".to_owned(),
    }
}

/// Jobs per enqueue script call, and bytes of payload: one call is atomic
/// and blocks the server while it runs, so big batches are split.
const BATCH_JOBS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

/// Enqueues `jobs` (already checked) in script calls of bounded size, with
/// a tracing event per job; each call waits for the replicas `options`
/// ask for.
pub(crate) async fn enqueue_batched(
    backend: &RedisBackend,
    keys: &QueueKeys,
    options: &QueueOptions,
    jobs: &[(Uuid, &JobEnvelope)],
    ids: Ids,
) -> std::result::Result<Vec<ops::Added>, redis::RedisError> {
    let mut conn = backend.connection();
    let mut added = Vec::with_capacity(jobs.len());
    let mut rest = jobs;
    while !rest.is_empty() {
        let take = batch_len(rest);
        let (batch, tail) = rest.split_at(take);
        let results = ops::enqueue(&mut conn, keys, options.dedup_window, batch, ids).await?;
        if let Some((replicas, timeout)) = options.replicas_ack {
            await_replicas(&mut conn, keys, replicas, timeout).await?;
        }
        for result in results {
            tracing::debug!(queue = %keys.name, job.id = %result.id,
                duplicate = result.duplicate, "job enqueued");
            added.push(result);
        }
        rest = tail;
    }
    Ok(added)
}

/// `WAIT` on the connection the enqueue went through; fewer replicas than
/// asked is a `NOREPLICAS` error (Redis' own code for "not enough replicas
/// to write"), which maps to [`Error::Unavailable`].
async fn await_replicas(
    conn: &mut crate::RedisConnection,
    keys: &QueueKeys,
    replicas: u32,
    timeout: Duration,
) -> std::result::Result<(), redis::RedisError> {
    let acked = conn
        .wait_for_replicas(&keys.key("wait"), replicas, timeout)
        .await?;
    if acked < i64::from(replicas) {
        return Err(redis::make_extension_error(
            "NOREPLICAS".to_owned(),
            Some(format!(
                "{acked} of {replicas} replicas confirmed the enqueue on queue {} within \
                 {timeout:?}; the master may keep it, but a failover now could lose it",
                keys.name
            )),
        ));
    }
    Ok(())
}

/// How many of `jobs` go in the next call: at least one, at most
/// [`BATCH_JOBS`], stopping before [`BATCH_BYTES`] of payload.
fn batch_len(jobs: &[(Uuid, &JobEnvelope)]) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for (_, envelope) in jobs.iter().take(BATCH_JOBS) {
        bytes += envelope.payload.len();
        if n > 0 && bytes > BATCH_BYTES {
            break;
        }
        n += 1;
    }
    n.max(1)
}

#[cfg(test)]
mod tests {
    use reposmith_core::job::Job;

    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Blob(String);

    impl Job for Blob {
        const QUEUE: &'static str = "blobs";
    }

    fn envelopes(sizes: &[usize]) -> Vec<(Uuid, JobEnvelope)> {
        sizes
            .iter()
            .map(|&n| {
                let job = Blob("x".repeat(n));
                (Uuid::now_v7(), JobEnvelope::of(&job, usize::MAX).unwrap())
            })
            .collect()
    }

    #[test]
    fn batches_stop_at_the_job_count_or_the_byte_budget() {
        let many = envelopes(&vec![1; 300]);
        let refs: Vec<_> = many.iter().map(|(id, e)| (*id, e)).collect();
        assert_eq!(batch_len(&refs), BATCH_JOBS);
        let big = envelopes(&[BATCH_BYTES / 2, BATCH_BYTES / 2, 10]);
        let refs: Vec<_> = big.iter().map(|(id, e)| (*id, e)).collect();
        assert_eq!(batch_len(&refs), 1, "the second would pass the budget");
        let huge = envelopes(&[BATCH_BYTES * 2, 1]);
        let refs: Vec<_> = huge.iter().map(|(id, e)| (*id, e)).collect();
        assert_eq!(
            batch_len(&refs),
            1,
            "a job larger than the budget goes alone"
        );
    }
}
