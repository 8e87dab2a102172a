//! [`CacheStats`]: counters of what the cache did, for metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running counters, shared by every clone of a [`Cache`](super::Cache).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) fills: AtomicU64,
    pub(crate) fills_refused: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) early_refreshes: AtomicU64,
    pub(crate) bypassed: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) invalidations_missed: AtomicU64,
    pub(crate) invalidations_replayed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            fills: get(&self.fills),
            fills_refused: get(&self.fills_refused),
            waits: get(&self.waits),
            coalesced: get(&self.coalesced),
            queued: get(&self.queued),
            early_refreshes: get(&self.early_refreshes),
            bypassed: get(&self.bypassed),
            errors: get(&self.errors),
            undecodable: get(&self.undecodable),
            invalidations: get(&self.invalidations),
            invalidations_missed: get(&self.invalidations_missed),
            invalidations_replayed: get(&self.invalidations_replayed),
        }
    }
}

/// What a cache has done since it was built (all clones together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Entries served from the cache (rows, absent rows and query results).
    pub hits: u64,
    /// Lookups that found nothing and took the lease (a database read followed).
    pub misses: u64,
    /// Entries written.
    pub fills: u64,
    /// Fills refused because the entry was invalidated (or its lease
    /// lapsed) after the lookup: the stale-fill guard at work.
    pub fills_refused: u64,
    /// Lookups that found another process's fill in progress and waited.
    pub waits: u64,
    /// Reads that shared another task's lookup in this process.
    pub coalesced: u64,
    /// Reads that arrived while a lookup of their entry was under way in
    /// this process, waited for it to end and then led the next one (a
    /// lookup that started before them could predate a commit they must see).
    pub queued: u64,
    /// Hits that refreshed the entry early (XFetch).
    pub early_refreshes: u64,
    /// Reads that went to the database without asking the cache (breaker
    /// open, or the replay grace after a missed invalidation).
    pub bypassed: u64,
    /// Cache calls that failed or timed out.
    pub errors: u64,
    /// Entries that did not decode (another format or a damaged value):
    /// treated as misses and deleted.
    pub undecodable: u64,
    /// Invalidations applied after a commit.
    pub invalidations: u64,
    /// Invalidations that did not reach the cache (left to the outbox replay).
    pub invalidations_missed: u64,
    /// Invalidations applied by the outbox relay.
    pub invalidations_replayed: u64,
}
