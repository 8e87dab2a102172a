//! The repository cache, backend-free: what `#[repo(cache(..))]` declares
//! ([`CacheSpec`]), entry keys and encoding, the [`CacheStore`] seam a
//! cache server implements (Redis, in `reposmith-redis`), and [`Cache`],
//! which reads through it.
//!
//! # What it promises
//!
//! A read that starts after `commit()` returned never sees a value older
//! than that commit, provided the commit's invalidation reached the cache
//! server:
//!
//! * units of work collect invalidations and apply them after the
//!   outermost COMMIT (never before, nothing on rollback; a rolled-back
//!   nested unit drops its own), before `commit()` returns;
//! * the stale-fill guard ([`store`] explains the lease protocol) refuses a
//!   fill whose database read may predate a commit, for found and absent
//!   rows and for cached queries;
//! * reads inside a unit of work never use the cache: the unit must see its
//!   own writes, and a SERIALIZABLE unit must read the database for its
//!   conflict detection;
//! * in-process single flight only shares a lookup that started after the
//!   reader arrived (see `flight.rs`).
//!
//! When an invalidation does not reach the server (it is down, paused or
//! failing over), the commit still succeeds: this process keeps the
//! invalidation and reads the database until a retry applies it (one
//! reader at a time retries, at most once per breaker cooldown); on
//! PostgreSQL it was also written to the transactional outbox in the unit's
//! transaction ([`CacheOptions::durable_invalidation`]), and the outbox
//! relay applies it for every other process once the server answers. Until
//! then another process may serve the old entry (about a second after the
//! server answers, or the entry's TTL on MongoDB, which has no outbox).
//! A `commit()` cancelled after COMMIT was sent still invalidates
//! ([`Cache::arm`]). A failover that loses an acknowledged `DEL` (Redis
//! replicates asynchronously) is not covered: that entry lives until its
//! TTL.
//!
//! The cache never turns into an error: a server that fails or is slower
//! than [`CacheOptions::response_timeout`] opens a circuit breaker, and
//! reads go to the database at no extra cost until a probe finds it back.

pub mod codec;
mod flight;
mod key;
mod options;
mod pending;
mod read;
mod replay;
mod spec;
mod stats;
pub mod store;

pub use codec::CachedRow;
pub use key::{Keys, MAX_PREFIX, check_prefix, escape, id_text};
pub use options::{CacheOptions, MAX_ENTRY_BYTES};
pub use pending::PendingInvalidations;
pub use read::{Cache, PendingApply};
pub use replay::InvalidationReplay;
pub use spec::CacheSpec;
pub use stats::CacheStats;
pub use store::{CacheStore, EntryKey, Fill, Invalidation, Lease, Lookup, LookupRequest, Scope};

use sha2::{Digest, Sha256};

/// The outbox topic durable invalidations are recorded on.
pub const INVALIDATION_TOPIC: &str = "reposmith.cache";

/// The key hash of a query: the first 128 bits of the SHA-256 of `parts`
/// (the rendered query text and its encoded parameters), as hex. Each part
/// is length-prefixed, so no two different part lists hash alike by
/// concatenation.
pub fn query_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The encoded form of query parameters, for [`query_hash`].
pub fn encode_params(values: &[crate::Value]) -> Vec<u8> {
    codec::encode(&codec::Entry::Row(values.to_vec()), 0)
}
