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
//!   error, until [`Outbox::replay`] sends it again. A row that can never be
//!   delivered (it does not decode, or the destination refused it as invalid
//!   or too large) turns dead at once.
//! - A destination that cannot be reached (refused connection, timeout,
//!   lost connection, Redis down or loading): the rows wait and are offered
//!   again every poll interval, without counting an attempt, so an outage of
//!   any length delays messages and never kills them. (A destination that
//!   hangs on one message every time therefore never turns it dead: its
//!   publish deadline is reported as a timeout in `last_error`.)
//! - An ordered destination whose first row waits for a retry holds back
//!   its later rows, and only its own: other destinations keep flowing.
//! - Acknowledged is not durable: a row is done once the destination
//!   answered. A Redis that acknowledged a job and then lost it (no AOF
//!   fsync, a failover to a replica that had not caught up) has lost it;
//!   [`Outbox::redeliver_unreceipted`] sends recent jobs without a receipt
//!   again, and the queue's `replicas_ack` option makes an enqueue wait for
//!   a replica.
//!
//! # Costs
//!
//! Every commit that recorded messages sends one `NOTIFY`, which Postgres
//! serializes on a global lock at commit: fine for thousands of commits a
//! second, a bottleneck well beyond. The relay holds its transaction (and
//! the batch's row locks) while destinations take their share, up to the
//! publish deadline.

mod admin;
mod receipts;
mod reconcile;
pub(crate) mod relay;
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

/// Wakes the relays now rather than at their next poll; best effort (a
/// relay polls anyway), as its own operation so a failure here never
/// undoes the write that asked for it.
async fn wake_relays(backend: &crate::PgBackend) {
    let notify = sqlx::query("SELECT pg_notify('reposmith_outbox', '1')");
    let _ = backend
        .on_pool(|held| Box::pin(notify.execute(&mut **held)))
        .await;
}
