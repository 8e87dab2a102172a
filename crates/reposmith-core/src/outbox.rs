//! The transactional outbox, backend-free: what a unit of work records
//! ([`PendingMessages`]), the table it records it in ([`SCHEMA`]), what a
//! relay hands to a destination ([`OutboxMessage`]) and what a destination
//! implements ([`Deliver`]).
//!
//! A unit of work that writes entities can also record *messages*: jobs for
//! a queue ([`Job`]) and events for a topic ([`Event`]).
//! They are written to the outbox table in the unit's own transaction, just
//! before COMMIT, so they exist exactly when the unit's writes do. A relay
//! then reads committed rows and delivers them; a crash between delivery and
//! marking the row done delivers the message again, so every destination is
//! idempotent on [`OutboxMessage::id`]. Nothing here claims two-phase commit.
//!
//! A unit of work opened for a tenant (`store.for_tenant(..)`) writes its
//! tenant on each of its rows (the `tenant` column, its setting's text),
//! and the relay hands it on ([`OutboxMessage::tenant`]): the queue
//! destination puts it on the job, so the worker's handler knows it.

use std::fmt;
use std::future::Future;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::{Job, JobEnvelope, validate_name};
use crate::repository::BoxFuture;
use crate::schema::{
    ColumnDef, ColumnRole, ColumnType, EntitySchema, IdStrategy, IndexDef, IndexMethod,
};
use crate::tenant::Tenant;
use crate::{Backends, Error, Result};

/// The outbox table.
pub const TABLE: &str = "reposmith_outbox";

/// The table of job receipts: keys of jobs whose effects a worker committed
/// through the idempotency guard.
pub const RECEIPTS_TABLE: &str = "reposmith_job_receipts";

/// The outbox table, for the migrations tooling (register it with
/// `Schemas::with_outbox`) like any entity's table.
pub static SCHEMA: EntitySchema = EntitySchema::new(
    "OutboxMessage",
    TABLE,
    &[
        ColumnDef::new("seq", "seq", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("id", "id", ColumnType::Uuid, false).with_unique(),
        ColumnDef::new("destination", "destination", ColumnType::Text, false),
        ColumnDef::new("payload", "payload", ColumnType::Json, false),
        ColumnDef::new("state", "state", ColumnType::Text, false).with_default("'pending'"),
        ColumnDef::new("attempts", "attempts", ColumnType::Int, false).with_default("0"),
        ColumnDef::new("last_error", "last_error", ColumnType::Text, true),
        ColumnDef::new("created_at", "created_at", ColumnType::TimestampTz, false)
            .with_default("now()"),
        ColumnDef::new(
            "available_at",
            "available_at",
            ColumnType::TimestampTz,
            false,
        )
        .with_default("now()"),
        ColumnDef::new("done_at", "done_at", ColumnType::TimestampTz, true),
        // The tenant of the unit that recorded the message (its setting's
        // text), NULL outside a tenant's unit. Last, so a migration adds it
        // to an existing table as it stands.
        ColumnDef::new("tenant", "tenant", ColumnType::Text, true),
    ],
    0,
    IdStrategy::Identity,
    &[
        IndexDef::new("reposmith_outbox_id_key", &["id"], true, IndexMethod::BTree),
        // The relay reads pending rows in outbox order (`state = 'pending'
        // ORDER BY seq LIMIT n`): this index serves it without a sort.
        IndexDef::new(
            "reposmith_outbox_pending",
            &["state", "seq"],
            false,
            IndexMethod::BTree,
        ),
    ],
)
.with_backends(Backends::Postgres);

/// The job receipts table (the idempotency guard's), for the migrations tooling.
pub static RECEIPTS_SCHEMA: EntitySchema = EntitySchema::new(
    "JobReceipt",
    RECEIPTS_TABLE,
    &[
        ColumnDef::new("key", "key", ColumnType::Text, false).with_role(ColumnRole::Id),
        ColumnDef::new("queue", "queue", ColumnType::Text, false),
        ColumnDef::new("job_id", "job_id", ColumnType::Text, false),
        ColumnDef::new("done_at", "done_at", ColumnType::TimestampTz, false).with_default("now()"),
    ],
    0,
    IdStrategy::Assigned,
    &[IndexDef::new(
        "reposmith_job_receipts_done_at",
        &["done_at"],
        false,
        IndexMethod::BTree,
    )],
)
.with_backends(Backends::Postgres);

/// The `state` of a row waiting for the relay.
pub const STATE_PENDING: &str = "pending";
/// The `state` of a delivered row.
pub const STATE_DONE: &str = "done";
/// The `state` of a row the relay gave up on (kept with its last error).
pub const STATE_DEAD: &str = "dead";

/// The notification channel a commit with messages signals on.
pub const CHANNEL: &str = "reposmith_outbox";

/// Where a message goes: a queue (`queue:<name>`) or a topic (`topic:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// Jobs for a task queue; the payload is a [`JobEnvelope`].
    Queue(String),
    /// Events for the handlers or projections routed to this topic.
    Topic(String),
}

impl Destination {
    /// A queue destination, with its name checked.
    pub fn queue(name: &str) -> Result<Destination> {
        validate_name("queue", name)?;
        Ok(Destination::Queue(name.to_owned()))
    }

    /// A topic destination, with its name checked.
    pub fn topic(name: &str) -> Result<Destination> {
        validate_name("topic", name)?;
        Ok(Destination::Topic(name.to_owned()))
    }

    /// Reads the stored spelling back.
    pub fn parse(stored: &str) -> Result<Destination> {
        match stored.split_once(':') {
            Some(("queue", name)) => Destination::queue(name),
            Some(("topic", name)) => Destination::topic(name),
            _ => Err(Error::invalid(
                "OutboxMessage",
                "destination",
                format!("{stored:?} is neither queue:<name> nor topic:<name>"),
            )),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Queue(name) => write!(f, "queue:{name}"),
            Destination::Topic(name) => write!(f, "topic:{name}"),
        }
    }
}

/// An event published on a topic through the outbox.
///
/// ```
/// use reposmith_core::outbox::Event;
///
/// #[derive(serde::Serialize)]
/// struct DocumentStored { id: uuid::Uuid }
///
/// impl Event for DocumentStored {
///     const TOPIC: &'static str = "document.stored";
/// }
/// ```
pub trait Event: Serialize + Send + Sync {
    /// The topic: 1 to 64 of `A-Z a-z 0-9 _ - .`.
    const TOPIC: &'static str;
}

/// An upsert or delete of one document in a projection (a MongoDB
/// collection kept in step with PostgreSQL through the outbox). Publish it
/// on the topic the projection destination is routed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Projection {
    /// Replace (or create) the document with id `id` by `doc`.
    Upsert {
        /// The document's id (its `_id`).
        id: serde_json::Value,
        /// The new document, without `_id`.
        doc: serde_json::Value,
    },
    /// Remove the document with id `id`.
    Delete {
        /// The document's id.
        id: serde_json::Value,
    },
}

impl Projection {
    /// An upsert of `doc` under `id`.
    pub fn upsert(id: impl Serialize, doc: &impl Serialize) -> Result<Projection> {
        Ok(Projection::Upsert {
            id: to_json("id", &id)?,
            doc: to_json("doc", doc)?,
        })
    }

    /// A delete of the document under `id`.
    pub fn delete(id: impl Serialize) -> Result<Projection> {
        Ok(Projection::Delete {
            id: to_json("id", &id)?,
        })
    }
}

/// A message recorded by a unit of work, not yet written.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PendingMessage {
    /// The message's idempotency key; also the job id on a queue.
    pub id: Uuid,
    /// Where it goes.
    pub destination: Destination,
    /// What it carries (a [`JobEnvelope`] for a queue).
    pub payload: serde_json::Value,
    /// The nested unit (savepoint) that recorded it; `0` for the unit itself.
    pub level: usize,
}

/// The messages a unit of work and its nested units have recorded, written
/// to the outbox table at the outermost COMMIT.
///
/// Each message is tagged with the savepoint level that recorded it. Nested
/// units open and end as a stack, and their levels grow, so rolling a nested
/// unit back drops every message tagged with its level or a later one (its
/// own and those of units nested in it); committing it keeps them.
#[derive(Debug, Default)]
pub struct PendingMessages {
    messages: Mutex<Vec<PendingMessage>>,
}

impl PendingMessages {
    /// No messages.
    pub fn new() -> PendingMessages {
        PendingMessages::default()
    }

    /// Records `job` for its queue from the unit at `level`; returns the
    /// message id (the job's id on the queue).
    pub fn enqueue<J: Job>(&self, level: usize, job: &J, max_payload: usize) -> Result<Uuid> {
        let envelope = JobEnvelope::of(job, max_payload)?;
        self.push_envelope(level, envelope)
    }

    /// Records a prepared job envelope from the unit at `level`.
    pub fn push_envelope(&self, level: usize, envelope: JobEnvelope) -> Result<Uuid> {
        let destination = Destination::queue(&envelope.queue)?;
        let payload = to_json("payload", &envelope)?;
        Ok(self.push(level, destination, payload))
    }

    /// Records `event` on its topic from the unit at `level`.
    pub fn publish<E: Event>(&self, level: usize, event: &E, max_payload: usize) -> Result<Uuid> {
        self.publish_on(level, E::TOPIC, event, max_payload)
    }

    /// Records `payload` on `topic` from the unit at `level`.
    pub fn publish_on(
        &self,
        level: usize,
        topic: &str,
        payload: &impl Serialize,
        max_payload: usize,
    ) -> Result<Uuid> {
        let json = serde_json::to_value(payload).map_err(|e| {
            Error::invalid(
                "event",
                topic.to_owned(),
                format!("does not serialize: {e}"),
            )
        })?;
        self.publish_json(level, topic, json, max_payload)
    }

    /// Records an already serialized `payload` on `topic` from the unit at
    /// `level`, refusing one whose JSON text is over `max_payload` bytes.
    pub fn publish_json(
        &self,
        level: usize,
        topic: &str,
        payload: serde_json::Value,
        max_payload: usize,
    ) -> Result<Uuid> {
        let destination = Destination::topic(topic)?;
        let size = json_len(&payload);
        if size > max_payload {
            return Err(Error::TooLarge {
                what: format!("payload of an event on topic {topic}"),
                size,
                limit: max_payload,
            });
        }
        Ok(self.push(level, destination, payload))
    }

    fn push(&self, level: usize, destination: Destination, payload: serde_json::Value) -> Uuid {
        let id = Uuid::now_v7();
        self.list().push(PendingMessage {
            id,
            destination,
            payload,
            level,
        });
        id
    }

    /// Drops the messages of the nested unit at `level` and of units nested in it.
    pub fn roll_back_to(&self, level: usize) {
        self.list().retain(|m| m.level < level);
    }

    /// Takes every message, leaving none.
    pub fn take(&self) -> Vec<PendingMessage> {
        std::mem::take(&mut *self.list())
    }

    /// True when no message is recorded.
    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<PendingMessage>> {
        self.messages.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A committed message, as the relay hands it to a destination.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OutboxMessage {
    /// Position in the outbox (commit order for writes that conflicted).
    pub seq: i64,
    /// The idempotency key destinations dedupe on.
    pub id: Uuid,
    /// Where it goes.
    pub destination: Destination,
    /// What it carries.
    pub payload: serde_json::Value,
    /// Failed deliveries so far.
    pub attempts: i32,
    /// When the unit recorded it (database clock).
    pub created_at: DateTime<Utc>,
    /// The tenant of the unit of work that recorded it, if it was opened
    /// for one (`store.for_tenant(..)`); read back as text (see
    /// [`crate::tenant`]), so `store.for_tenant(tenant)` reaches its rows.
    pub tenant: Option<Tenant>,
}

impl OutboxMessage {
    /// A message (for destinations' tests and hand-built relays).
    pub fn new(
        seq: i64,
        id: Uuid,
        destination: Destination,
        payload: serde_json::Value,
        created_at: DateTime<Utc>,
    ) -> OutboxMessage {
        OutboxMessage {
            seq,
            id,
            destination,
            payload,
            attempts: 0,
            created_at,
            tenant: None,
        }
    }

    /// This message as recorded by a unit of work for `tenant`.
    pub fn with_tenant(mut self, tenant: Option<Tenant>) -> OutboxMessage {
        self.tenant = tenant;
        self
    }

    /// The payload read as a job envelope (queue messages).
    pub fn job(&self) -> Result<JobEnvelope> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            Error::invalid(
                "OutboxMessage",
                "payload",
                format!("message {} is not a job envelope: {e}", self.id),
            )
        })
    }

    /// The payload read as `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            Error::invalid(
                "OutboxMessage",
                "payload",
                format!("message {} on {}: {e}", self.id, self.destination),
            )
        })
    }
}

/// A destination the relay delivers committed messages to: a task queue, a
/// MongoDB projection, an application handler.
///
/// Delivery is at least once: a relay that crashes after delivering and
/// before marking the rows done delivers them again, so a destination must
/// treat a second delivery of the same [`OutboxMessage::id`] as done.
pub trait Deliver: Send + Sync + fmt::Debug {
    /// Delivers `messages` (in outbox order), one outcome per message in the
    /// same order. An `Err` leaves that message for a later attempt (or the
    /// dead state after the relay's limit).
    fn deliver<'a>(&'a self, messages: &'a [OutboxMessage]) -> BoxFuture<'a, Vec<Result<()>>>;

    /// True when messages must arrive in outbox order: the relay then lets
    /// one relay at a time deliver to this destination and stops at the
    /// first failure instead of delivering later messages around it.
    fn ordered(&self) -> bool {
        false
    }

    /// True (the default) when delivered rows stay in the outbox as `done`
    /// until the relay's retention purges them; false deletes them as soon
    /// as they are delivered, for high-volume messages nobody audits (cache
    /// invalidations: one per committed write of a cached entity).
    fn keep_delivered(&self) -> bool {
        true
    }
}

/// An application handler as a destination: an `async fn` called once per
/// message, in outbox order (so it is [ordered](Deliver::ordered)). After a
/// failure the rest of the batch is not handed to it; the relay retries from
/// the failed message. It must be idempotent on [`OutboxMessage::id`].
pub struct Handler<F> {
    handler: F,
}

impl<F> Handler<F> {
    /// Wraps `handler`.
    pub fn new(handler: F) -> Handler<F> {
        Handler { handler }
    }
}

impl<F> fmt::Debug for Handler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handler")
    }
}

impl<F, Fut> Deliver for Handler<F>
where
    F: Fn(OutboxMessage) -> Fut + Send + Sync,
    Fut: Future<Output = Result<()>> + Send,
{
    fn deliver<'a>(&'a self, messages: &'a [OutboxMessage]) -> BoxFuture<'a, Vec<Result<()>>> {
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(messages.len());
            for message in messages {
                if outcomes.iter().any(Result::is_err) {
                    outcomes.push(Err(Error::config(
                        "outbox",
                        "not handed to the handler: an earlier message of its batch failed",
                    )));
                    continue;
                }
                outcomes.push((self.handler)(message.clone()).await);
            }
            outcomes
        })
    }

    fn ordered(&self) -> bool {
        true
    }
}

/// The length of `json`'s text, counted without building the text.
fn json_len(json: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a Value into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, json);
    count.0
}

fn to_json(what: &str, value: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|e| Error::invalid("OutboxMessage", what, format!("does not serialize: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, serde::Deserialize)]
    struct Embed {
        id: i64,
    }

    impl Job for Embed {
        const QUEUE: &'static str = "embed";
    }

    #[test]
    fn nested_rollback_drops_only_its_own_messages() {
        let pending = PendingMessages::new();
        pending.enqueue(0, &Embed { id: 1 }, 1024).unwrap();
        pending.enqueue(1, &Embed { id: 2 }, 1024).unwrap(); // committed child
        pending.enqueue(2, &Embed { id: 3 }, 1024).unwrap(); // rolled back child
        pending.enqueue(3, &Embed { id: 4 }, 1024).unwrap(); // its grandchild
        pending.roll_back_to(2);
        let kept: Vec<i64> = pending
            .take()
            .iter()
            .map(|m| {
                m.payload["payload"].as_str().unwrap()[6..7]
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(kept, [1, 2]);
        assert!(pending.is_empty());
    }

    #[test]
    fn destinations_round_trip_and_refuse_bad_names() {
        for stored in ["queue:embed", "topic:document.stored"] {
            assert_eq!(Destination::parse(stored).unwrap().to_string(), stored);
        }
        for bad in ["embed", "queue:", "topic:a b", "other:x"] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oversized_event_is_refused() {
        let pending = PendingMessages::new();
        let err = pending
            .publish_on(0, "t", &"x".repeat(100), 50)
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 50, .. }), "{err}");
    }
}
