//! [`InvalidationReplay`]: the outbox destination that applies durable
//! invalidations, so one the cache missed after a commit is applied once
//! the cache server answers again.

use super::read::Cache;
use super::store::Invalidation;
use crate::Result;
use crate::outbox::{Deliver, OutboxMessage};
use crate::repository::BoxFuture;

/// Applies the invalidations recorded on [`INVALIDATION_TOPIC`](super::INVALIDATION_TOPIC):
/// give it to an outbox relay as that topic's destination. A batch is
/// merged and applied in one call; applying an invalidation twice is
/// harmless, so the relay's at-least-once delivery is enough.
#[derive(Debug, Clone)]
pub struct InvalidationReplay {
    cache: Cache,
}

impl InvalidationReplay {
    /// Replays into `cache`.
    pub fn new(cache: Cache) -> InvalidationReplay {
        InvalidationReplay { cache }
    }
}

impl Deliver for InvalidationReplay {
    /// One row per committed write of a cached entity: deleted once applied,
    /// not kept for the relay's retention.
    fn keep_delivered(&self) -> bool {
        false
    }

    fn deliver<'a>(&'a self, messages: &'a [OutboxMessage]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            let mut merged = Invalidation::default();
            let mut outcomes: Vec<Result<()>> = Vec::with_capacity(messages.len());
            for message in messages {
                match message.decode::<Invalidation>() {
                    Ok(invalidation) => {
                        merged.extend(invalidation);
                        outcomes.push(Ok(()));
                    }
                    // A payload that is not an invalidation is permanent: retrying cannot help.
                    Err(error) => outcomes.push(Err(error)),
                }
            }
            merged.dedup();
            if let Err(error) = self.cache.replay(&merged).await {
                let reason = error.to_string();
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(crate::Error::Unavailable {
                        backend: crate::Backend::Redis,
                        reason: format!("cache invalidation not applied: {reason}"),
                    });
                }
            }
            outcomes
        })
    }
}
