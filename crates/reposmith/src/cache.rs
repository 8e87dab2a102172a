//! The repository cache: declare `#[repo(cache(ttl = "5m", negative_ttl =
//! "30s"))]` on an entity and, with Redis configured, pool reads of it
//! (`get`, `get_many`, the unique finders, and queries or searches marked
//! `.cached(ttl)`) are served from Redis, while a read that starts after a
//! `commit()` returned never sees a value older than that commit.
//!
//! How: a unit of work collects what its writes invalidate and applies it
//! after its outermost COMMIT (never before, nothing on rollback); a reader
//! that misses takes a lease before reading the database and its fill is
//! refused if an invalidation came in between (the lease idea of "Scaling
//! Memcache at Facebook", NSDI 2013); on PostgreSQL the invalidation is also
//! written to the transactional outbox, and the `Store` runs a relay that
//! replays any Redis missed. A Redis outage degrades to the database, never
//! to an error. The details are on [`Cache`] and in
//! [`reposmith_core::cache`].
//!
//! [`Store::cache`](crate::Store::cache) gives the running cache (its
//! [`CacheStats`]); [`Config::with_cache`](crate::Config::with_cache) sets
//! its [`CacheOptions`].

pub use reposmith_core::cache::{
    Cache, CacheOptions, CacheSpec, CacheStats, CacheStore, CachedRow, EntryKey, Fill,
    INVALIDATION_TOPIC, Invalidation, InvalidationReplay, Lease, Lookup, LookupRequest, Scope,
    query_hash,
};
#[cfg(feature = "near-cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "near-cache")))]
pub use reposmith_redis::cache::NearCacheOptions;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use reposmith_redis::cache::{CacheServerCheck, RedisCacheStore};
