//! A task queue on Redis: [`Queue`] enqueues jobs (types implementing
//! [`Job`]), [`Worker`] runs them with a handler, [`QueueDestination`]
//! moves jobs from the transactional outbox onto their queues.
//!
//! ```no_run
//! use std::time::Duration;
//! use reposmith_redis::queue::{Job, JobError, Queue, Worker};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct EmbedChunk { chunk_id: i64 }
//!
//! impl Job for EmbedChunk {
//!     const QUEUE: &'static str = "embed";
//!     fn idempotency_key(&self) -> Option<String> {
//!         Some(format!("embed-chunk-{}", self.chunk_id))
//!     }
//! }
//!
//! # async fn run(backend: reposmith_redis::RedisBackend) -> reposmith_core::Result<()> {
//! let queue = Queue::<EmbedChunk>::new(&backend)?;
//! queue.enqueue(&EmbedChunk { chunk_id: 42 }).await?;
//! queue.enqueue_in(&EmbedChunk { chunk_id: 43 }, Duration::from_secs(60)).await?;
//!
//! let worker = Worker::new(queue.clone())
//!     .concurrency(8)
//!     .run(|ctx| async move {
//!         println!("embedding chunk {}", ctx.job().chunk_id);
//!         Ok::<(), JobError>(())
//!     })
//!     .await?;
//! worker.shutdown(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! Delivery is **at least once**. A job is removed only when a handler
//! returned `Ok` and its ack reached Redis with a valid lease. A handler may
//! therefore run more than once for one job:
//!
//! - the handler finished but the worker died (or lost Redis) before the
//!   ack landed: the lease expires and another worker runs the job again;
//! - the worker stalled past its lease (a blocked thread, a long GC-like
//!   pause): another worker takes the job over; the stalled worker's ack is
//!   refused, but its handler's effects have happened.
//!
//! Handlers must be idempotent; [`JobContext::idempotency_key`] names the
//! effect for a guard in the database. Duplicates at *enqueue* time are
//! dropped:
//!
//! - a second enqueue of the same job id (the outbox relay re-delivering a
//!   message after a crash between publish and marking it done), within the
//!   dedup window ([`QueueOptions::dedup_window`], 24 h by default), even
//!   after the job completed; after the window it is enqueued again;
//! - a second job with the same idempotency key while the job holding the
//!   key is waiting, delayed or running, and at most for the dedup window.
//!   Once the holder completed or died (or the window passed), a job with
//!   that key is new: "embed document 7" enqueued after document 7 changed
//!   runs again.
//!
//! Jobs survive a Redis restart as far as Redis' persistence allows
//! (`appendonly yes` with `appendfsync always` loses nothing acknowledged).
//! With `appendfsync everysec` (Redis' default) a crash of the server can
//! lose jobs acknowledged within about the last second.
//! [`check_server`] (run by [`Worker::run`] and by [`QueueDestination`]
//! before its first delivery) refuses a server whose `maxmemory-policy` is
//! not `noeviction`, since eviction would drop jobs silently, warns when
//! persistence is off, and warns once when AOF is on without
//! `appendfsync always`.
//!
//! # Why sorted sets and Lua, not Streams
//!
//! Redis Streams with consumer groups give at-least-once delivery and
//! pending-entry reclaiming, but not what this queue needs: priorities
//! (a stream is one FIFO), delayed jobs (entries are visible at once),
//! per-job fencing tokens (a reclaimed entry keeps its id, so a stalled
//! consumer's late `XACK` still succeeds) and dedup on enqueue. So the
//! queue is sorted sets and hashes, changed only by Lua scripts
//! that run atomically on the server and read the time from the server's
//! `TIME`, so workers' clocks never matter.
//!
//! # Tenants
//!
//! A job enqueued through a tenant's handle ([`Queue::for_tenant`]), or
//! recorded by a unit of work opened for a tenant and relayed from the
//! outbox, carries the tenant; the handler reads it from
//! [`JobContext::tenant`] and opens `store.for_tenant(..)` with it. Jobs
//! stored before jobs carried tenants have none and run as before.
//!
//! # Keys
//!
//! All keys of queue `<name>` share the hash tag `{reposmith:q:<name>}` (the
//! prefix is [`QueueOptions::prefix`], `reposmith` by default), so
//! they sit in one Redis Cluster slot and every script touches one slot.
//! Names are validated (1 to 64 of `A-Z a-z 0-9 _ - .`); job ids are UUIDs
//! and idempotency keys are hashed with SHA-1 inside the script, so no user
//! text becomes part of a key.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<tag>:wait` | sorted set | ready jobs; score `priority · 2^42 + seq`: priority first, then FIFO |
//! | `<tag>:delayed` | sorted set | jobs waiting for their start or retry; score: due time (ms, server clock) |
//! | `<tag>:active` | sorted set | leased jobs; score: lease deadline (ms, server clock) |
//! | `<tag>:dead` | sorted set | dead letters; score: when they died |
//! | `<tag>:job:<id>` | hash | payload, attempts, settings, fencing token, last error, tenant (a tenant's job only) |
//! | `<tag>:id:<id>` | string, expires | a job enqueued under the caller's id (the outbox relay's) was seen within the dedup window; jobs whose id the queue made get none |
//! | `<tag>:dedup:<sha1(key)>` | string, expires | the id of the job holding an idempotency key (a tenant's job: `sha1(tenant + "\n" + key)`, so keys dedupe per tenant); deleted when that job completes or dies |
//! | `<tag>:seq` | counter | FIFO sequence |
//! | `<tag>:signal` | list, ≤ 64 | wakes workers blocked on `BLPOP` |
//! | `<tag>:stats` | hash | lifetime counters ([`QueueStats`]) |
//!
//! # Leases and fencing
//!
//! A fetch leases a job until `now + lease` and bumps its token; the worker
//! renews every third of the lease while the handler runs. Every fetch
//! first reclaims expired leases: the token is bumped again (so the old
//! holder's renew, ack, fail or release is refused) and the job goes back
//! to `wait`, or to `dead` when its attempts are spent. Each worker fetches
//! on a connection of its own and sleeps on `BLPOP` (at most 1 s, or until
//! the next delayed job is due), never on the shared connection.

mod check;
mod context;
mod dead;
mod destination;
mod fetcher;
mod keys;
mod ops;
mod producer;
mod runner;
mod scripts;
mod stats;
mod worker;

pub use check::{ServerCheck, check_server};
pub use context::{JobContext, JobError};
pub use dead::{DeadLetter, DeadLetters, MAX_DEAD_PAGE};
pub use destination::QueueDestination;
pub use producer::{DEFAULT_PREFIX, Enqueued, Queue, QueueOptions};
pub use stats::QueueStats;
pub use worker::{ShutdownReport, Worker, WorkerCounts, WorkerHandle};

/// The job types, re-exported from the core so a queue user needs one import.
pub use reposmith_core::job::{DEFAULT_MAX_PAYLOAD, Job, JobEnvelope, MAX_PRIORITY, StartAt};
