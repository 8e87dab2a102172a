//! [`QueueDestination`]: where the outbox relay delivers queue messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use reposmith_core::job::JobEnvelope;
use reposmith_core::outbox::{Deliver, Destination, OutboxMessage};
use reposmith_core::repository::BoxFuture;
use reposmith_core::{Backend, Error, Result};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::check::check_server;
use super::keys::QueueKeys;
use super::ops::Ids;
use super::producer::{QueueOptions, enqueue_batched};
use crate::RedisBackend;

/// Enqueues the outbox's queue messages (payload: a [`JobEnvelope`]) on
/// their queues, whatever the queue's name: one destination serves every
/// queue. The job id is the message id, so a message the relay delivers
/// again (it crashed after delivering, before marking the row done) is a
/// duplicate within the dedup window and enqueued once.
///
/// Before its first delivery it runs [`check_server`] (once; again after a
/// failure): while the server is refused (a `maxmemory-policy` that may
/// evict jobs) or cannot be checked, every message fails with
/// [`Error::Unavailable`], so the relay keeps the rows waiting, the reason
/// in their `last_error`, instead of spending their attempts.
#[derive(Debug, Clone)]
pub struct QueueDestination {
    backend: RedisBackend,
    options: QueueOptions,
    /// Set once the server passed [`check_server`]; shared by clones.
    checked: Arc<OnceCell<()>>,
}

impl QueueDestination {
    /// A destination on `backend` with the default [`QueueOptions`] (24 h
    /// dedup window).
    pub fn new(backend: &RedisBackend) -> QueueDestination {
        QueueDestination::with_options(backend, QueueOptions::default())
    }

    /// A destination with `options`; keep the dedup window longer than the
    /// relay's longest redelivery delay.
    pub fn with_options(backend: &RedisBackend, options: QueueOptions) -> QueueDestination {
        QueueDestination {
            backend: backend.clone(),
            options,
            checked: Arc::new(OnceCell::new()),
        }
    }

    async fn deliver_all(&self, messages: &[OutboxMessage]) -> Vec<Result<()>> {
        if let Err(reason) = self.check().await {
            return messages
                .iter()
                .map(|_| {
                    Err(Error::Unavailable {
                        backend: Backend::Redis,
                        reason: reason.clone(),
                    })
                })
                .collect();
        }
        let mut outcomes: Vec<Option<Result<()>>> = messages.iter().map(|_| None).collect();
        // Queue name → (index, id, envelope), in outbox order.
        let mut by_queue: BTreeMap<String, Vec<(usize, Uuid, JobEnvelope)>> = BTreeMap::new();
        for (i, message) in messages.iter().enumerate() {
            match self.envelope(message) {
                Ok(envelope) => by_queue
                    .entry(envelope.queue.clone())
                    .or_default()
                    .push((i, message.id, envelope)),
                Err(error) => outcomes[i] = Some(Err(error)),
            }
        }
        for (name, jobs) in by_queue {
            let outcome = match QueueKeys::new(&self.options.prefix, &name) {
                Ok(keys) => self.enqueue(&keys, &jobs).await.map_err(Some),
                // `envelope` validated the name; kept for a total match.
                Err(_) => Err(None),
            };
            for (i, _, _) in &jobs {
                outcomes[*i] = Some(match &outcome {
                    Ok(()) => Ok(()),
                    Err(Some(e)) => Err(self.backend.map_error(e)),
                    Err(None) => Err(Error::invalid("OutboxMessage", "destination", &name)),
                });
            }
        }
        outcomes.into_iter().map(|o| o.unwrap_or(Ok(()))).collect()
    }

    /// Runs [`check_server`] unless it passed before; the failure's text.
    async fn check(&self) -> std::result::Result<(), String> {
        let checked = self
            .checked
            .get_or_try_init(|| async { check_server(&self.backend).await.map(drop) })
            .await;
        checked.map(drop).map_err(|error| {
            tracing::warn!(%error, "the queue server failed its check; outbox messages wait");
            format!("the queue server failed its check: {error}")
        })
    }

    /// The message's envelope, checked: for a queue, of that queue, valid.
    fn envelope(&self, message: &OutboxMessage) -> Result<JobEnvelope> {
        let Destination::Queue(name) = &message.destination else {
            return Err(Error::invalid(
                "OutboxMessage",
                "destination",
                format!(
                    "message {} goes to {}, not to a queue",
                    message.id, message.destination
                ),
            ));
        };
        let envelope = message.job()?;
        if &envelope.queue != name {
            return Err(Error::invalid(
                "OutboxMessage",
                "payload",
                format!(
                    "message {} is addressed to queue {name} but carries a job for queue {}",
                    message.id, envelope.queue
                ),
            ));
        }
        envelope.validate(self.options.max_payload)?;
        with_tenant_of(message, envelope)
    }

    async fn enqueue(
        &self,
        keys: &QueueKeys,
        jobs: &[(usize, Uuid, JobEnvelope)],
    ) -> std::result::Result<(), redis::RedisError> {
        let refs: Vec<(Uuid, &JobEnvelope)> = jobs.iter().map(|(_, id, e)| (*id, e)).collect();
        let added = enqueue_batched(&self.backend, keys, &self.options, &refs, Ids::Caller).await?;
        let duplicates = added.iter().filter(|a| a.duplicate).count();
        tracing::debug!(
            queue = %keys.name,
            delivered = added.len(),
            duplicates,
            "outbox messages enqueued"
        );
        Ok(())
    }
}

/// `envelope` carrying the tenant of the unit that recorded `message` (the
/// row's `tenant`), which the worker hands to the job's handler. An
/// envelope naming another tenant than its row is refused (permanently).
fn with_tenant_of(message: &OutboxMessage, envelope: JobEnvelope) -> Result<JobEnvelope> {
    match (&message.tenant, &envelope.tenant) {
        (Some(row), Some(job)) if row.setting() != job.setting() => Err(Error::invalid(
            "OutboxMessage",
            "tenant",
            format!(
                "message {} was recorded for tenant {:?} but carries a job for tenant {:?}",
                message.id,
                row.setting(),
                job.setting()
            ),
        )),
        (Some(row), None) => Ok(envelope.for_tenant(Some(row.clone()))),
        _ => Ok(envelope),
    }
}

impl Deliver for QueueDestination {
    fn deliver<'a>(&'a self, messages: &'a [OutboxMessage]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(self.deliver_all(messages))
    }
}
