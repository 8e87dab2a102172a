//! The transactional outbox: jobs and events recorded by a unit of work
//! (`unit.enqueue(&job)`, `unit.publish(&event)`) are written with its
//! COMMIT and delivered at least once by a [`Relay`] to a destination: a
//! Redis queue, a MongoDB projection, an application handler.
//!
//! The outbox table lives in PostgreSQL; register it with the migrations
//! (`Schemas::new().with_outbox()`) or create it with
//! [`PgBackend::create_outbox_tables`](crate::PgBackend::create_outbox_tables).
//! How delivery works, and where a message can arrive twice, is documented
//! on [`reposmith_postgres::outbox`].

pub use reposmith_core::outbox::{Deliver, Destination, Event, Handler, OutboxMessage, Projection};
#[cfg(feature = "mongo")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
pub use reposmith_mongo::MongoProjection;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use reposmith_postgres::outbox::{
    DeadMessage, Outbox, OutboxStats, Receipt, Relay, RelayHandle, RelayOptions, RelayReport,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use reposmith_redis::queue::QueueDestination;
