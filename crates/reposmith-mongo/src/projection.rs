//! [`MongoProjection`]: an outbox destination that keeps a MongoDB
//! collection in step with PostgreSQL, one upsert or delete per message.
//!
//! Each applied document carries `_outbox_seq`, the outbox position of the
//! message that wrote it. An upsert only replaces a document with a smaller
//! position, so a message delivered twice (the relay crashed before marking
//! it done) or late changes nothing: the projection is idempotent by
//! construction. The destination is ordered, so one relay at a time applies
//! a collection's messages in outbox order and a delete is never overtaken
//! by an older upsert. There is no transaction spanning both stores: the
//! projection trails PostgreSQL by the relay's delay and converges.
//!
//! A delete leaves no tombstone, so an older upsert applied after it (an
//! operator replaying a dead message with `Outbox::replay`) recreates the
//! document; replay dead projection messages in order, or publish the
//! current state again.

use std::time::Duration;

use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};
use reposmith_core::outbox::{Deliver, OutboxMessage, Projection};
use reposmith_core::repository::BoxFuture;
use reposmith_core::{Error, Result};

use crate::MongoBackend;
use crate::error::duplicate_key;

/// The field holding the outbox position of the message that wrote a document.
pub const SEQ_FIELD: &str = "_outbox_seq";

/// Applies [`Projection`] messages to one collection; see the module docs.
#[derive(Debug, Clone)]
pub struct MongoProjection {
    backend: MongoBackend,
    collection: Collection<Document>,
}

impl MongoProjection {
    /// A projection into `collection` of `backend`'s database.
    pub fn new(backend: &MongoBackend, collection: &str) -> Result<MongoProjection> {
        let bad = collection.is_empty()
            || collection.len() > 120
            || collection.starts_with("system.")
            || collection.contains(['$', '\0']);
        if bad {
            return Err(Error::invalid(
                "MongoProjection",
                "collection",
                format!("{collection:?} is not a usable collection name"),
            ));
        }
        Ok(MongoProjection {
            backend: backend.clone(),
            collection: backend.database().collection(collection),
        })
    }

    async fn apply(&self, message: &OutboxMessage) -> Result<()> {
        let projection: Projection = message.decode()?;
        let seq = message.seq;
        let newer_or_absent = |id: Bson| {
            doc! { "_id": id, "$or": [
                { SEQ_FIELD: { "$lt": seq } },
                { SEQ_FIELD: { "$exists": false } },
            ] }
        };
        let timeout = self.timeout();
        match projection {
            Projection::Upsert { id, doc: body } => {
                let id = bson_of("id", id)?;
                let mut document = match bson_of("doc", body)? {
                    Bson::Document(document) => document,
                    other => {
                        return Err(Error::invalid(
                            "MongoProjection",
                            "doc",
                            format!("must be a JSON object, got {other}"),
                        ));
                    }
                };
                document.insert("_id", id.clone());
                document.insert(SEQ_FIELD, seq);
                let replace = self
                    .collection
                    .replace_one(newer_or_absent(id), document)
                    .upsert(true);
                match tokio::time::timeout(timeout, replace.into_future()).await {
                    Err(_) => Err(self.timed_out(timeout)),
                    Ok(Ok(_)) => Ok(()),
                    // The filter missed because a newer position is stored, and
                    // the upsert then collided with that document's `_id`.
                    Ok(Err(e)) if duplicate_key(&e).is_some() => Ok(()),
                    Ok(Err(e)) => Err(self.backend.map_error(e)),
                }
            }
            Projection::Delete { id } => {
                let filter = newer_or_absent(bson_of("id", id)?);
                let delete = self.collection.delete_one(filter);
                match tokio::time::timeout(timeout, delete.into_future()).await {
                    Err(_) => Err(self.timed_out(timeout)),
                    Ok(result) => result.map(drop).map_err(|e| self.backend.map_error(e)),
                }
            }
        }
    }

    fn timeout(&self) -> Duration {
        self.backend.operation_timeout()
    }

    fn timed_out(&self, after: Duration) -> Error {
        Error::Timeout {
            backend: reposmith_core::Backend::Mongo,
            operation: "projection write",
            after,
        }
    }
}

impl Deliver for MongoProjection {
    fn deliver<'a>(&'a self, messages: &'a [OutboxMessage]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(messages.len());
            for message in messages {
                let outcome = match outcomes.iter().any(Result::is_err) {
                    // Ordered: nothing after a failure, the relay retries from it.
                    true => Err(Error::config(
                        "outbox",
                        "an earlier message of the batch failed",
                    )),
                    false => self.apply(message).await,
                };
                outcomes.push(outcome);
            }
            outcomes
        })
    }

    fn ordered(&self) -> bool {
        true
    }
}

/// The entity codec's JSON mapping, which refuses `$`/`.` keys and values
/// MongoDB cannot store.
fn bson_of(field: &'static str, json: serde_json::Value) -> Result<Bson> {
    crate::codec::json_to_bson("MongoProjection", field, &json)
}
