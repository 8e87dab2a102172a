//! [`CacheStore`]: the seam between the backend-free read-through logic
//! ([`Cache`](super::Cache)) and the server that keeps the entries (the
//! Redis implementation lives in `reposmith-redis`).
//!
//! # The protocol a store implements
//!
//! Every entry is one server-side record holding the encoded value, the
//! time the database read took (for early refresh) and at most one *lease*:
//! a random token naming the one caller allowed to fill the entry. This is
//! the lease of Facebook's memcache paper (Nishtala et al., "Scaling
//! Memcache at Facebook", NSDI 2013, §3.2.1), with two changes: an
//! invalidation deletes the whole record (value and lease) instead of
//! bumping a stamp, and a fill is refused unless the record still carries
//! the filler's token. So:
//!
//! * a reader that misses takes the lease (if nobody holds one) *before* it
//!   reads the database;
//! * an invalidation after a commit deletes the record, and with it the
//!   lease, so a fill whose database read may predate the commit is refused;
//! * a record evicted by the server's memory policy also takes its lease
//!   along: the worst eviction can do is refuse a fill, never admit a stale
//!   one (no separate stamp key exists that could be evicted first).
//!
//! Cached queries ([`EntryKey::Query`]) live under a per-entity
//! *generation*: a random token stored at [`Scope::generation_key`], part
//! of every query entry's name. Any write to the entity replaces the token
//! (an invalidation's `scopes`), which orphans every cached query of the
//! entity at once; orphans expire by their TTL. A query's lease records the
//! generation it was taken under and its fill is refused once the
//! generation moved on.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::repository::BoxFuture;

/// Where an entry lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryKey {
    /// One row by id (or an absent row): a complete server key, see
    /// [`Keys::row`](super::Keys::row).
    Row(String),
    /// One query's result under the entity's current generation.
    Query {
        /// The entity's query scope.
        scope: Scope,
        /// Hex SHA-256 (first 128 bits) of the rendered query and its
        /// parameters.
        hash: String,
    },
}

impl EntryKey {
    /// A short text for spans and in-process single flight.
    pub fn as_str(&self) -> &str {
        match self {
            EntryKey::Row(key) => key,
            EntryKey::Query { hash, .. } => hash,
        }
    }
}

/// The query scope of one entity: the common hash tag of its generation key
/// and every query entry (so in Redis Cluster they share a slot).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scope(pub String);

impl Scope {
    /// The key holding the current generation token.
    pub fn generation_key(&self) -> String {
        format!("{}:gen", self.0)
    }

    /// The key of query `hash` cached under `generation`.
    pub fn query_key(&self, generation: &str, hash: &str) -> String {
        format!("{}:q:{generation}:{hash}", self.0)
    }
}

/// The right to fill one entry, taken before the database read.
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    /// The random token the fill must present.
    pub token: String,
    /// For a query entry: the generation the lease was taken under (the
    /// fill is refused once it changed).
    pub generation: Option<String>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The entry is cached. `refresh` carries a lease when the store
    /// decided (XFetch, see [`LookupRequest::xfetch`]) that this caller
    /// should refresh the entry early: serve `value`, then read the
    /// database and fill with the lease.
    Hit {
        /// The encoded entry ([`codec`](super::codec)).
        value: Vec<u8>,
        /// The lease for an early refresh, when this caller won one.
        refresh: Option<Lease>,
    },
    /// Not cached; the caller now holds the lease: read the database, then
    /// [`fill`](CacheStore::fill) with it.
    Miss(Lease),
    /// Not cached and another caller holds the lease (it is reading the
    /// database now): look again after `retry_in`, at most until the lease
    /// would have expired.
    Busy {
        /// How long until looking again is worthwhile.
        retry_in: Duration,
    },
}

/// One lookup.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    /// The entry.
    pub key: EntryKey,
    /// A fresh random token, taken as the lease if the caller gets one.
    pub token: String,
    /// How long a lease lives: a holder that crashes or is cancelled blocks
    /// fills of this entry at most this long.
    pub lease_ttl: Duration,
    /// XFetch's random factor, `-ln(u) * beta` with `u` uniform in (0, 1]:
    /// the store grants an early-refresh lease on a hit when
    /// `remaining_ttl <= recompute_time * xfetch` and nobody holds a lease
    /// (Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic Cache
    /// Stampede Prevention", VLDB 2015). 0 never refreshes early.
    pub xfetch: f64,
}

/// One fill, presenting the lease taken by its lookup.
#[derive(Debug, Clone)]
pub struct Fill {
    /// The entry.
    pub key: EntryKey,
    /// The lease the lookup returned.
    pub lease: Lease,
    /// The encoded entry.
    pub value: Vec<u8>,
    /// How long the entry lives (already jittered).
    pub ttl: Duration,
    /// How long the database read took: stored for XFetch.
    pub recompute: Duration,
}

/// Entries to drop after a commit, as recorded in the outbox (JSON) and
/// applied by [`CacheStore::invalidate`]. Applying one twice is harmless.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    /// Row keys to delete (value and lease).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<String>,
    /// Query scopes whose generation is replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
}

impl Invalidation {
    /// Whether there is nothing to invalidate.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.scopes.is_empty()
    }

    /// Adds `other`'s keys (duplicates stay until [`dedup`](Self::dedup)).
    pub fn extend(&mut self, other: Invalidation) {
        self.rows.extend(other.rows);
        self.scopes.extend(other.scopes);
    }

    /// Adds `other`'s keys that are not present yet: linear time.
    pub fn merge(&mut self, other: &Invalidation) {
        self.extend(other.clone());
        self.dedup();
    }

    /// Drops repeated keys, keeping the first of each (linear time).
    pub fn dedup(&mut self) {
        let mut seen = std::collections::HashSet::with_capacity(self.rows.len());
        self.rows.retain(|row| seen.insert(row.clone()));
        let mut seen = std::collections::HashSet::with_capacity(self.scopes.len());
        self.scopes.retain(|scope| seen.insert(scope.clone()));
    }

    /// Removes every key `applied` holds (it reached the server).
    pub fn remove_all(&mut self, applied: &Invalidation) {
        let rows: std::collections::HashSet<&String> = applied.rows.iter().collect();
        let scopes: std::collections::HashSet<&Scope> = applied.scopes.iter().collect();
        self.rows.retain(|row| !rows.contains(row));
        self.scopes.retain(|scope| !scopes.contains(scope));
    }

    /// This invalidation in parts of at most `rows` row keys (at least 1),
    /// the scopes in the first part.
    pub fn chunks(&self, rows: usize) -> Vec<Invalidation> {
        let mut parts: Vec<Invalidation> = self
            .rows
            .chunks(rows.max(1))
            .map(|rows| Invalidation {
                rows: rows.to_vec(),
                scopes: Vec::new(),
            })
            .collect();
        match parts.first_mut() {
            Some(first) => first.scopes = self.scopes.clone(),
            None => parts.push(self.clone()),
        }
        parts
    }
}

/// The server side of the cache. Implementations are dumb and fast: one
/// round trip per call, no retries (the [`Cache`](super::Cache) bounds each
/// call with its response timeout and opens its circuit breaker on
/// failures). Errors are classified [`Error`](crate::Error)s; the cache
/// never passes them to the caller of a read.
pub trait CacheStore: Send + Sync + fmt::Debug + 'static {
    /// Looks up every entry of `requests` (one result per request, in
    /// order), taking leases and granting early refreshes as described on
    /// [`Lookup`].
    fn lookup<'a>(&'a self, requests: &'a [LookupRequest]) -> BoxFuture<'a, Result<Vec<Lookup>>>;

    /// Writes each fill whose lease still holds; `true` for written,
    /// `false` for refused (the entry was invalidated, evicted, or its
    /// lease expired and passed to another caller since the lookup).
    fn fill<'a>(&'a self, fills: &'a [Fill]) -> BoxFuture<'a, Result<Vec<bool>>>;

    /// Deletes the row entries and replaces the scopes' generations.
    fn invalidate<'a>(&'a self, invalidation: &'a Invalidation) -> BoxFuture<'a, Result<()>>;

    /// Gives up `lease` (a fill that will not come: the database read
    /// failed or was cancelled), so waiters need not wait for it to expire.
    /// Releasing a lease that is no longer held does nothing.
    fn release<'a>(&'a self, key: &'a EntryKey, lease: &'a Lease) -> BoxFuture<'a, Result<()>>;

    /// Deletes an entry that failed to decode, if it still holds exactly
    /// `value` (compare-and-delete: a newer entry is kept).
    fn discard<'a>(&'a self, key: &'a EntryKey, value: &'a [u8]) -> BoxFuture<'a, Result<()>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_a_large_invalidation_is_linear() {
        let mut pending = Invalidation::default();
        let started = std::time::Instant::now();
        for i in 0..50_000 {
            pending.extend(Invalidation {
                rows: vec![format!("k{}", i % 40_000)],
                scopes: vec![Scope("{s}".into())],
            });
        }
        pending.dedup();
        assert_eq!(pending.rows.len(), 40_000);
        assert_eq!(pending.scopes.len(), 1);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn chunks_keep_every_key_once_and_the_scopes_in_the_first() {
        let invalidation = Invalidation {
            rows: (0..4500).map(|i| i.to_string()).collect(),
            scopes: vec![Scope("{s}".into())],
        };
        let parts = invalidation.chunks(2000);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.iter().map(|p| p.rows.len()).sum::<usize>(), 4500);
        assert_eq!(parts.iter().map(|p| p.scopes.len()).sum::<usize>(), 1);
        let only_scopes = Invalidation {
            rows: Vec::new(),
            scopes: vec![Scope("{s}".into())],
        };
        assert_eq!(only_scopes.chunks(10), vec![only_scopes]);
        let mut rest = invalidation.clone();
        rest.remove_all(&parts[0]);
        assert_eq!(rest.rows.len(), 2500);
        assert!(rest.scopes.is_empty());
    }
}
