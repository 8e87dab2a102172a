//! The transactional outbox on PostgreSQL.
//!
//! A unit of work records jobs ([`PgUnitOfWork::enqueue`](crate::PgUnitOfWork::enqueue))
//! and events ([`PgUnitOfWork::publish`](crate::PgUnitOfWork::publish)); they
//! are inserted into the `reposmith_outbox` table by the unit's outermost
//! COMMIT, in the same transaction as the unit's writes, together with a
//! `NOTIFY reposmith_outbox` that Postgres delivers only if the transaction
//! commits. A [`Relay`] then moves committed rows to their destinations (a
//! Redis queue, a MongoDB projection, an application handler) and marks them
//! done; [`Outbox`] inspects, replays and purges rows; [`PgBackend::run_once`](crate::PgBackend::run_once)
//! is the idempotency guard for job handlers that write to Postgres.
//!
//! # Why in this crate
//!
//! The outbox is a Postgres table written inside a Postgres transaction, and
//! the relay's work is Postgres work (`FOR UPDATE SKIP LOCKED` batches,
//! `LISTEN`). What is not Postgres-specific (the messages, the destination
//! trait, the savepoint-aware buffer) is in `reposmith-core`, so the Redis
//! and MongoDB crates implement destinations without depending on this one.
//!
//! # Guarantees and duplicate windows
//!
//! - A message exists exactly when its unit committed: rolled-back units and
//!   rolled-back nested units leave none.
//! - Delivery is at least once. A relay that crashes (or loses its
//!   connection, or hits its publish deadline) after a destination accepted
//!   a batch and before its COMMIT marking the rows done delivers them
//!   again. Every message carries an id (UUID v7) that destinations dedupe
//!   on: the Redis queue uses it as the job id (a known id is not enqueued
//!   twice within the queue's dedup window), a MongoDB projection applies an
//!   upsert only over an older outbox position.
//! - A message is written at COMMIT, after the unit's other writes, so when
//!   two units write the same row the one that committed first also has the
//!   smaller outbox position; ordered destinations receive messages in that
//!   order, one relay at a time (a transaction-scoped advisory lock).
//! - A destination that keeps failing: the row is retried with backoff and
//!   turns `dead` after [`RelayOptions::max_attempts`], keeping its last
//!   error, until [`Outbox::replay`] sends it again.
//! - A destination that cannot be reached (refused connection, timeout,
//!   lost connection, Redis down): the rows wait and are offered again every
//!   poll interval, without counting an attempt, so an outage of any length
//!   delays messages and never kills them. (A destination that hangs on one
//!   message every time therefore never turns it dead: its publish deadline
//!   is reported as a timeout in `last_error`.)
//! - A destination that acknowledged and then lost the message (a Redis
//!   master that died before its replica had the write): the row is done
//!   and the job gone. [`Outbox::redeliver_unreceipted`] sends the recent
//!   queue rows whose job left no receipt again; or ask the queue for
//!   replica acknowledgements (`QueueOptions::replicas_ack` in
//!   reposmith-redis) so the row is done only once a replica has the job.

mod admin;
mod receipts;
mod reconcile;
mod relay;
mod write;

pub use admin::{DeadMessage, Outbox, OutboxStats};
pub use receipts::Receipt;
pub use relay::{Relay, RelayHandle, RelayOptions, RelayReport};
pub(crate) use write::{write_error, write_pending};

/// An outbox row whose column does not decode (a table changed by hand).
fn undecodable(err: sqlx::Error) -> reposmith_core::Error {
    reposmith_core::Error::invalid(
        "OutboxMessage",
        "row",
        format!("an outbox row does not decode: {err}"),
    )
}
