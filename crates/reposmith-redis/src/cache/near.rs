//! The near cache (L1): encoded entries kept in this process for a short
//! time, in front of Redis. Off unless the `near-cache` feature is on and
//! [`RedisCacheStore::with_near_cache`](super::RedisCacheStore::with_near_cache)
//! asks for it.
//!
//! # What it costs
//!
//! A hit served from L1 never reaches Redis, so it takes microseconds, but
//! it also gives up the cross-process half of "never stale after a
//! commit". This process's own invalidations evict its L1 before
//! `invalidate` returns, so it still reads its own writes; another
//! process learns of a commit only when the invalidation's fan-out
//! message arrives, and until then serves the old value from its L1. That
//! window is usually well under a millisecond on a local network, and is
//! never longer than [`NearCacheOptions::ttl`] (1 s by default): an L1
//! entry lives at most that long after the Redis read that brought it,
//! whatever happens to the fan-out.
//!
//! # Fan-out: pub/sub, not client-side tracking
//!
//! Every store publishes its invalidations (after they are applied in
//! Redis) on `{prefix}:cache:invalidations`, as the JSON of the
//! [`Invalidation`]; every store with an L1 keeps one subscriber task on a
//! pub/sub connection of its own that evicts what the messages name. While
//! that connection is down (and until it is subscribed again) L1 is
//! cleared and bypassed: reads go to Redis, nothing is served from memory,
//! since messages sent meanwhile are lost.
//!
//! RESP3 client-side tracking (`CLIENT TRACKING`, redis-rs 1.8's
//! `caching` module behind its `cache-aio` feature) was the alternative;
//! it does not fit this cache:
//!
//! * redis-rs caches the replies of read-only commands (`GET`, `HGET`,
//!   `MGET`...), keyed by command; a cache lookup here is a Lua script
//!   that may take a lease (a write), which it never caches, so L1 would
//!   need a second, plain read path beside the lease protocol;
//! * tracking is per connection and needs RESP3 on the shared connection
//!   (every command of the application then speaks RESP3), and the module
//!   is marked experimental;
//! * cached queries live under a generation whose key a reader never
//!   names: a scope invalidation deletes the generation key, which would
//!   have to be tracked and mapped back onto every entry of the scope
//!   anyway, as the messages here do;
//! * the server would keep a tracking table of every key each process
//!   read (or, in broadcast mode, send every change under a prefix to
//!   every client), while the messages here carry exactly the keys a
//!   commit invalidated.
//!
//! Pub/sub is at most once: a message is lost only when the subscriber's
//! connection drops, which the subscriber sees, and then L1 is cleared.
//! A store whose process writes but keeps no L1 must still publish
//! ([`RedisCacheStore::publish_invalidations`](super::RedisCacheStore::publish_invalidations)),
//! or the other processes' L1s keep its writes' old values for up to the
//! L1 TTL.
//!
//! # No stale entry from a race
//!
//! A Redis read that raced with an invalidation must not land in L1 after
//! the eviction: the store notes the L1's epoch (bumped by every eviction
//! and every reset) before its Redis lookup, inserts what Redis returned,
//! and removes it again if the epoch moved meanwhile. A query entry also
//! records its scope's epoch, so a later invalidation of the scope hides
//! it without walking the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use moka::Expiry;
use reposmith_core::cache::{EntryKey, Invalidation, Scope};

use crate::RedisBackend;

/// How the near cache behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NearCacheOptions {
    /// The longest an entry stays in L1 after the Redis read that brought
    /// it (1 s); it also never outlives the entry's TTL in Redis. This is
    /// the bound on how long another process's commit can go unseen here.
    pub ttl: Duration,
    /// Most entries kept (10,000); the least used go first.
    pub max_entries: u64,
}

impl Default for NearCacheOptions {
    fn default() -> Self {
        NearCacheOptions {
            ttl: Duration::from_secs(1),
            max_entries: 10_000,
        }
    }
}

impl NearCacheOptions {
    /// Sets [`ttl`](Self::ttl).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets [`max_entries`](Self::max_entries).
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }
}

/// An entry held in L1.
#[derive(Clone)]
struct Held {
    value: Arc<Vec<u8>>,
    ttl: Duration,
    /// For a query entry: its scope's epoch when it was read.
    scope_epoch: u64,
}

/// Each entry expires after its own TTL, counted again when replaced.
struct PerEntry;

impl Expiry<EntryKey, Held> for PerEntry {
    fn expire_after_create(&self, _: &EntryKey, held: &Held, _: Instant) -> Option<Duration> {
        Some(held.ttl)
    }

    fn expire_after_update(
        &self,
        _: &EntryKey,
        held: &Held,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(held.ttl)
    }
}

/// The L1 of one store (shared by its clones).
pub(crate) struct Near {
    entries: moka::sync::Cache<EntryKey, Held>,
    ttl: Duration,
    /// True while the subscriber is subscribed: L1 is read and filled only then.
    live: AtomicBool,
    /// Bumped by every eviction and reset.
    epoch: AtomicU64,
    scopes: Mutex<HashMap<Scope, u64>>,
    subscriber: OnceLock<tokio::task::AbortHandle>,
}

/// What a lookup noted before asking Redis.
pub(crate) struct Ticket {
    epoch: u64,
}

impl Near {
    /// An L1 and its subscriber task on `channel` (needs a Tokio runtime).
    pub(crate) fn start(
        backend: RedisBackend,
        channel: String,
        options: &NearCacheOptions,
    ) -> Arc<Near> {
        let near = Arc::new(Near {
            entries: moka::sync::Cache::builder()
                .max_capacity(options.max_entries)
                .expire_after(PerEntry)
                .build(),
            ttl: options.ttl,
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            scopes: Mutex::new(HashMap::new()),
            subscriber: OnceLock::new(),
        });
        let task = tokio::spawn(subscribe(Arc::downgrade(&near), backend, channel));
        let _ = near.subscriber.set(task.abort_handle());
        near
    }

    /// Whether L1 is in use (its subscriber is subscribed).
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Notes the epoch before a Redis lookup.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket {
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }

    /// The entry at `key`, if L1 is live and holds a current one.
    pub(crate) fn get(&self, key: &EntryKey) -> Option<Vec<u8>> {
        if !self.is_live() {
            return None;
        }
        let held = self.entries.get(key)?;
        if let EntryKey::Query { scope, .. } = key
            && self.scope_epoch(scope) != held.scope_epoch
        {
            self.entries.invalidate(key);
            return None;
        }
        Some(held.value.as_ref().clone())
    }

    /// Keeps what Redis returned for `key` (with `ttl_left` to live there),
    /// unless an eviction or a reset came since `ticket`.
    pub(crate) fn put(&self, ticket: &Ticket, key: &EntryKey, value: &[u8], ttl_left: Duration) {
        let ttl = ttl_left.min(self.ttl);
        if ttl.is_zero() || !self.is_live() {
            return;
        }
        let scope_epoch = match key {
            EntryKey::Query { scope, .. } => self.scope_epoch(scope),
            EntryKey::Row(_) => 0,
        };
        let held = Held {
            value: Arc::new(value.to_vec()),
            ttl,
            scope_epoch,
        };
        self.entries.insert(key.clone(), held);
        if self.epoch.load(Ordering::SeqCst) != ticket.epoch || !self.is_live() {
            self.entries.invalidate(key);
        }
    }

    /// Drops what `invalidation` names.
    pub(crate) fn evict(&self, invalidation: &Invalidation) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if !invalidation.scopes.is_empty() {
            let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
            for scope in &invalidation.scopes {
                *scopes.entry(scope.clone()).or_default() += 1;
            }
        }
        for row in &invalidation.rows {
            self.entries.invalidate(&EntryKey::Row(row.clone()));
        }
    }

    /// Drops one entry.
    pub(crate) fn evict_key(&self, key: &EntryKey) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(key);
    }

    /// Empties L1 and turns it on (`live`) or off.
    fn reset(&self, live: bool) {
        self.live.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
        self.live.store(live, Ordering::SeqCst);
    }

    fn scope_epoch(&self, scope: &Scope) -> u64 {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        scopes.get(scope).copied().unwrap_or(0)
    }
}

impl Drop for Near {
    fn drop(&mut self) {
        if let Some(task) = self.subscriber.get() {
            task.abort();
        }
    }
}

/// Longest pause between two subscription attempts.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The subscriber task: subscribes (retrying with growing pauses), evicts
/// what each message names, and resets L1 whenever the subscription is
/// made or lost. Ends when the store's last clone is dropped.
async fn subscribe(near: Weak<Near>, backend: RedisBackend, channel: String) {
    let mut failures: u32 = 0;
    loop {
        match backend.subscribe(&channel, failures as usize).await {
            Ok(mut pubsub) => {
                let Some(l1) = near.upgrade() else { return };
                l1.reset(true);
                drop(l1);
                failures = 0;
                tracing::debug!(target: "reposmith::cache", %channel, "near cache subscribed");
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Some(l1) = near.upgrade() else { return };
                    match serde_json::from_slice::<Invalidation>(message.get_payload_bytes()) {
                        Ok(invalidation) => l1.evict(&invalidation),
                        // Not ours to read: forget everything rather than guess.
                        Err(_) => l1.reset(true),
                    }
                }
                let Some(l1) = near.upgrade() else { return };
                l1.reset(false);
                tracing::warn!(target: "reposmith::cache", %channel,
                    "near cache subscription lost; L1 bypassed until it is back");
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::debug!(target: "reposmith::cache", %error, "near cache cannot subscribe");
            }
        }
        if near.strong_count() == 0 {
            return;
        }
        let pause = Duration::from_millis(20 << failures.min(6)).min(MAX_PAUSE);
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An L1 without a subscriber, live.
    fn live() -> Near {
        let near = Near {
            entries: moka::sync::Cache::builder()
                .max_capacity(100)
                .expire_after(PerEntry)
                .build(),
            ttl: Duration::from_secs(5),
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            scopes: Mutex::new(HashMap::new()),
            subscriber: OnceLock::new(),
        };
        near.reset(true);
        near
    }

    fn row(name: &str) -> EntryKey {
        EntryKey::Row(name.to_owned())
    }

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn a_read_that_raced_with_an_eviction_is_not_kept() {
        let near = live();
        let ticket = near.ticket();
        near.evict(&Invalidation {
            rows: vec!["a".into()],
            scopes: vec![],
        });
        near.put(&ticket, &row("a"), b"old", LONG);
        assert_eq!(near.get(&row("a")), None);
        let ticket = near.ticket();
        near.put(&ticket, &row("a"), b"new", LONG);
        assert_eq!(near.get(&row("a")).as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn a_scope_invalidation_hides_its_queries_only() {
        let near = live();
        let scope = |s: &str| Scope(s.to_owned());
        let query = |s: &str| EntryKey::Query {
            scope: scope(s),
            hash: "h".into(),
        };
        let ticket = near.ticket();
        near.put(&ticket, &query("{a}"), b"qa", LONG);
        near.put(&ticket, &query("{b}"), b"qb", LONG);
        near.put(&ticket, &row("r"), b"r", LONG);
        near.evict(&Invalidation {
            rows: vec![],
            scopes: vec![scope("{a}")],
        });
        assert_eq!(near.get(&query("{a}")), None);
        assert_eq!(near.get(&query("{b}")).as_deref(), Some(&b"qb"[..]));
        assert_eq!(near.get(&row("r")).as_deref(), Some(&b"r"[..]));
    }

    #[test]
    fn nothing_is_served_or_kept_while_not_live_and_a_reset_empties_it() {
        let near = live();
        near.put(&near.ticket(), &row("a"), b"a", LONG);
        near.reset(false);
        assert_eq!(near.get(&row("a")), None);
        near.put(&near.ticket(), &row("b"), b"b", LONG);
        near.reset(true);
        assert_eq!(near.get(&row("a")), None);
        assert_eq!(near.get(&row("b")), None);
    }

    #[test]
    fn an_entry_lives_no_longer_than_its_redis_ttl_or_the_near_ttl() {
        let near = live();
        near.put(&near.ticket(), &row("a"), b"a", Duration::from_millis(30));
        near.put(&near.ticket(), &row("z"), b"z", Duration::ZERO);
        assert!(near.get(&row("a")).is_some());
        assert_eq!(near.get(&row("z")), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(near.get(&row("a")), None);
    }
}
