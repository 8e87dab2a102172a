//! [`Cache`]: reads through the cache server with the stale-fill guard,
//! single flight, early refresh and a circuit breaker, and the
//! invalidations units of work apply after their commit.
//!
//! Backends call [`Cache::row`], [`Cache::rows`] and [`Cache::query`] with
//! a closure that reads the database; everything else (keys, encoding,
//! leases, waiting, degrading to the database) happens here, once for
//! every backend.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::breaker::{Breaker, ReadMode};
use super::codec::{self, CachedRow, Entry};
use super::key::Keys;
use super::options::CacheOptions;
use super::stats::{CacheStats, Counters};
use super::store::{CacheStore, EntryKey, Fill, Invalidation, Lease, Lookup, LookupRequest};
use crate::entity::Entity;
use crate::value::FieldType;
use crate::{Error, Result};

/// The repository cache: cheap to clone (clones share the connection,
/// counters and breaker). Built by the facade's `Store` when Redis is
/// configured and handed to the PostgreSQL and MongoDB backends.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn CacheStore>,
    options: CacheOptions,
    breaker: Breaker,
    counters: Counters,
    /// In-process single flight: the lookup (and fill) under way per entry.
    flights: Mutex<HashMap<EntryKey, watch::Receiver<Flight>>>,
}

#[derive(Clone)]
enum Flight {
    Running,
    Done(Arc<Entry>),
    Failed,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.inner.store)
            .field("prefix", &self.inner.options.prefix)
            .field("breaker_open", &self.inner.breaker.is_open())
            .finish()
    }
}

impl Cache {
    /// A cache over `store`; fails when an option is out of range.
    pub fn new(store: Arc<dyn CacheStore>, options: CacheOptions) -> Result<Cache> {
        options.validate()?;
        let breaker = Breaker::new(
            options.breaker_failures,
            options.breaker_cooldown,
            options.replay_grace,
        );
        Ok(Cache {
            inner: Arc::new(Inner {
                store,
                options,
                breaker,
                counters: Counters::default(),
                flights: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The options the cache was built with.
    pub fn options(&self) -> &CacheOptions {
        &self.inner.options
    }

    /// Counters of hits, misses, refused fills, invalidations and failures.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// Whether the circuit breaker is open (reads skip the cache).
    pub fn is_degraded(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// The key names of `E`, when it declares `#[repo(cache(..))]`.
    pub fn keys<E: Entity>(&self) -> Option<Keys> {
        Keys::of::<E>(&self.inner.options.prefix)
    }

    /// What to invalidate when rows of `E` with ids `ids` change: their
    /// row entries and every cached query of `E`. Empty when `E` is not
    /// cached.
    pub fn invalidation_of<'a, E: Entity>(
        &self,
        ids: impl IntoIterator<Item = &'a crate::Value>,
    ) -> Invalidation {
        let Some(keys) = self.keys::<E>() else {
            return Invalidation::default();
        };
        Invalidation {
            rows: ids.into_iter().map(|id| keys.row(id)).collect(),
            scopes: vec![keys.scope()],
        }
    }

    /// The row of `E` with `id`, from the cache or, on a miss, from `load`
    /// (which then fills the cache unless an invalidation came first).
    /// Never fails because of the cache: any cache trouble reads `load`.
    pub async fn row<E, F, Fut>(&self, id: &E::Id, load: F) -> Result<Option<E>>
    where
        E: Entity,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<E>>>,
    {
        let Some(spec) = E::SCHEMA.cache else {
            return load().await;
        };
        let keys = Keys::new(&self.inner.options.prefix, E::SCHEMA.entity, &spec);
        let key = EntryKey::Row(keys.row(&id.to_value()));
        let entry_of = || async {
            Ok(match load().await? {
                Some(row) => Entry::Row(row.to_values()?),
                None => Entry::Absent,
            })
        };
        let entry = self
            .single_flight(&key, spec.ttl(), spec.negative_ttl(), entry_of)
            .await?;
        match &*entry {
            Entry::Absent => Ok(None),
            Entry::Row(values) => match E::from_values(values.clone()) {
                Ok(row) => Ok(Some(row)),
                Err(_) => {
                    self.undecodable(&key, None);
                    load().await
                }
            },
            Entry::Rows(_) => {
                self.undecodable(&key, None);
                load().await
            }
        }
    }

    /// The rows of `E` with `ids` (in no particular order, missing ids
    /// skipped): hits from the cache, every miss from one call of `load`
    /// with the missing ids, then filled. No in-process single flight.
    pub async fn rows<E, F, Fut>(&self, ids: &[E::Id], load: F) -> Result<Vec<E>>
    where
        E: Entity,
        F: FnOnce(Vec<E::Id>) -> Fut,
        Fut: Future<Output = Result<Vec<E>>>,
    {
        let Some(spec) = E::SCHEMA.cache else {
            return load(ids.to_vec()).await;
        };
        let mode = self.inner.breaker.read_mode();
        if mode == ReadMode::Skip {
            Counters::add(&self.inner.counters.bypassed);
            return load(ids.to_vec()).await;
        }
        let keys = Keys::new(&self.inner.options.prefix, E::SCHEMA.entity, &spec);
        let mut wanted: Vec<(E::Id, EntryKey)> = Vec::with_capacity(ids.len());
        for id in ids {
            let key = EntryKey::Row(keys.row(&id.to_value()));
            if !wanted.iter().any(|(_, k)| *k == key) {
                wanted.push((id.clone(), key));
            }
        }
        let requests: Vec<LookupRequest> = wanted
            .iter()
            .map(|(_, key)| self.request(key.clone()))
            .collect();
        let found = match self.call(self.inner.store.lookup(&requests)).await {
            Ok(found) if found.len() == requests.len() => found,
            _ => return load(ids.to_vec()).await,
        };
        let mut rows = Vec::with_capacity(wanted.len());
        let mut missing: Vec<(E::Id, EntryKey, Option<LeaseGuard>)> = Vec::new();
        for ((id, key), lookup) in wanted.into_iter().zip(found) {
            let lease = |lease: Lease| Some(LeaseGuard::new(self, key.clone(), lease));
            match lookup {
                Lookup::Hit { value, refresh } => {
                    drop(refresh.and_then(lease));
                    match codec::decode(&value).map(|entry| match entry {
                        Entry::Row(values) => E::from_values(values).map(Some).ok(),
                        Entry::Absent => Some(None),
                        Entry::Rows(_) => None,
                    }) {
                        Ok(Some(row)) => {
                            Counters::add(&self.inner.counters.hits);
                            rows.extend(row);
                        }
                        _ => {
                            self.undecodable(&key, Some(value));
                            missing.push((id, key, None));
                        }
                    }
                }
                Lookup::Miss(l) => {
                    Counters::add(&self.inner.counters.misses);
                    let guard = match mode {
                        ReadMode::Use => lease(l),
                        _ => {
                            drop(lease(l));
                            None
                        }
                    };
                    missing.push((id, key, guard));
                }
                Lookup::Busy { .. } => missing.push((id, key, None)),
            }
        }
        if mode == ReadMode::Probe {
            self.inner.breaker.success();
            drop(missing);
            return load(ids.to_vec()).await;
        }
        if missing.is_empty() {
            return Ok(rows);
        }
        let started = Instant::now();
        let loaded = load(missing.iter().map(|(id, ..)| id.clone()).collect()).await?;
        let recompute = started.elapsed();
        let mut by_key: HashMap<String, Vec<crate::Value>> = HashMap::new();
        for row in &loaded {
            if let Ok(values) = row.to_values() {
                by_key.insert(keys.row(&row.id().to_value()), values);
            }
        }
        let mut fills = Vec::new();
        let mut guards = Vec::new();
        for (_, key, guard) in missing {
            let Some(guard) = guard else { continue };
            let EntryKey::Row(name) = &key else { continue };
            let (entry, ttl) = match by_key.remove(name) {
                Some(values) => (Entry::Row(values), spec.ttl()),
                None => match spec.negative_ttl() {
                    Some(ttl) => (Entry::Absent, ttl),
                    None => continue,
                },
            };
            if let Some(fill) = self.fill_of(key, guard.lease.clone(), &entry, ttl, recompute) {
                fills.push(fill);
                guards.push(guard);
            }
        }
        self.fill_all(&fills).await;
        guards.into_iter().for_each(LeaseGuard::disarm);
        rows.extend(loaded);
        Ok(rows)
    }

    /// A query's rows: from the cache under `E`'s current generation, or
    /// from `load`, then filled for `ttl` unless `E` was written meanwhile.
    /// `hash` identifies the query (see [`query_hash`](super::query_hash)).
    pub async fn query<E, F, Fut>(&self, hash: String, ttl: Duration, load: F) -> Result<Vec<CachedRow>>
    where
        E: Entity,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<CachedRow>>>,
    {
        let Some(keys) = self.keys::<E>() else {
            return load().await;
        };
        let key = EntryKey::Query {
            scope: keys.scope(),
            hash,
        };
        let entry_of = || async { Ok(Entry::Rows(load().await?)) };
        let entry = self.single_flight(&key, ttl, None, entry_of).await?;
        match &*entry {
            Entry::Rows(rows) => Ok(rows.clone()),
            _ => {
                self.undecodable(&key, None);
                load().await
            }
        }
    }

    /// Applies `invalidation` now (after a commit), bounded by the
    /// invalidation timeout. Returns false when it did not reach the
    /// server; reads in this process then skip the cache until the outbox
    /// replay had time to apply it.
    pub async fn invalidate(&self, invalidation: &Invalidation) -> bool {
        if invalidation.is_empty() {
            return true;
        }
        let counters = &self.inner.counters;
        let reached = match self.inner.breaker.allow() {
            false => false,
            true => {
                let call = self.inner.store.invalidate(invalidation);
                match tokio::time::timeout(self.inner.options.invalidation_timeout, call).await {
                    Ok(Ok(())) => {
                        self.inner.breaker.success();
                        true
                    }
                    _ => {
                        self.inner.breaker.failure();
                        Counters::add(&counters.errors);
                        false
                    }
                }
            }
        };
        match reached {
            true => Counters::add(&counters.invalidations),
            false => {
                Counters::add(&counters.invalidations_missed);
                self.inner.breaker.missed_invalidation();
                tracing::warn!(
                    target: "reposmith::cache",
                    cache = "invalidation missed",
                    rows = invalidation.rows.len(),
                    "cache invalidation did not reach the server; the outbox relay replays it"
                );
            }
        }
        reached
    }

    /// Applies an invalidation the outbox relay replays; an error is
    /// returned (the relay retries it).
    pub async fn replay(&self, invalidation: &Invalidation) -> Result<()> {
        let call = self.inner.store.invalidate(invalidation);
        let timeout = self.inner.options.invalidation_timeout;
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(())) => {
                Counters::add(&self.inner.counters.invalidations_replayed);
                tracing::debug!(target: "reposmith::cache", cache = "invalidation replayed");
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::Timeout {
                backend: crate::Backend::Redis,
                operation: "cache invalidation",
                after: timeout,
            }),
        }
    }

    fn request(&self, key: EntryKey) -> LookupRequest {
        let beta = self.inner.options.xfetch_beta;
        // u in (0, 1]: -ln(u) is exponentially distributed with mean 1.
        let u = 1.0 - crate::retry::jitter_fraction();
        LookupRequest {
            key,
            token: token(),
            lease_ttl: self.inner.options.lease_ttl,
            xfetch: -u.ln() * beta,
        }
    }

    /// A store call bounded by the response timeout, feeding the breaker.
    async fn call<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let timeout = self.inner.options.response_timeout;
        let outcome = match tokio::time::timeout(timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Timeout {
                backend: crate::Backend::Redis,
                operation: "cache lookup",
                after: timeout,
            }),
        };
        match &outcome {
            Ok(_) => self.inner.breaker.success(),
            Err(error) => {
                Counters::add(&self.inner.counters.errors);
                if self.inner.breaker.failure() {
                    tracing::warn!(target: "reposmith::cache", cache = "breaker open", %error,
                        "cache unreachable; reads go to the database");
                }
            }
        }
        outcome
    }

    /// Runs the lookup of `key` once per process at a time: other tasks
    /// asking for it meanwhile wait for its entry (bounded by `max_wait`).
    async fn single_flight<F, Fut>(
        &self,
        key: &EntryKey,
        ttl: Duration,
        negative_ttl: Option<Duration>,
        load: F,
    ) -> Result<Arc<Entry>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Entry>>,
    {
        // The lock is released before any await: the future stays Send.
        let leader = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(Flight::Running);
                    flights.insert(key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        let follower = match leader {
            Ok(tx) => {
                let flight = FlightGuard {
                    cache: self,
                    key,
                    tx: Some(tx),
                };
                let outcome = self.lookup_and_load(key, ttl, negative_ttl, &load).await;
                flight.finish(outcome.as_ref().ok().cloned());
                return outcome;
            }
            Err(rx) => Some(rx),
        };
        if let Some(mut rx) = follower {
            Counters::add(&self.inner.counters.coalesced);
            let waited = tokio::time::timeout(self.inner.options.max_wait, async {
                loop {
                    if let Flight::Done(entry) = &*rx.borrow_and_update() {
                        return Some(Arc::clone(entry));
                    }
                    if matches!(&*rx.borrow(), Flight::Failed) || rx.changed().await.is_err() {
                        return None;
                    }
                }
            })
            .await;
            if let Ok(Some(entry)) = waited {
                return Ok(entry);
            }
        }
        self.lookup_and_load(key, ttl, negative_ttl, &load).await
    }

    async fn lookup_and_load<F, Fut>(
        &self,
        key: &EntryKey,
        ttl: Duration,
        negative_ttl: Option<Duration>,
        load: &F,
    ) -> Result<Arc<Entry>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Entry>>,
    {
        let mode = self.inner.breaker.read_mode();
        if mode == ReadMode::Skip {
            Counters::add(&self.inner.counters.bypassed);
            return load().await.map(Arc::new);
        }
        let deadline = Instant::now() + self.inner.options.max_wait;
        loop {
            let request = self.request(key.clone());
            let found = self
                .call(self.inner.store.lookup(std::slice::from_ref(&request)))
                .await;
            let lookup = match found.map(|mut v| v.pop()) {
                Ok(Some(lookup)) => lookup,
                _ => return load().await.map(Arc::new),
            };
            if mode == ReadMode::Probe {
                if let Lookup::Miss(lease) | Lookup::Hit { refresh: Some(lease), .. } = lookup {
                    drop(LeaseGuard::new(self, key.clone(), lease));
                }
                Counters::add(&self.inner.counters.bypassed);
                return load().await.map(Arc::new);
            }
            match lookup {
                Lookup::Hit { value, refresh } => {
                    let Ok(entry) = codec::decode(&value) else {
                        self.undecodable(key, Some(value));
                        if let Some(lease) = refresh {
                            drop(LeaseGuard::new(self, key.clone(), lease));
                        }
                        return load().await.map(Arc::new);
                    };
                    Counters::add(&self.inner.counters.hits);
                    tracing::trace!(target: "reposmith::cache", cache = "hit");
                    let entry = Arc::new(entry);
                    let Some(lease) = refresh else {
                        return Ok(entry);
                    };
                    Counters::add(&self.inner.counters.early_refreshes);
                    let refreshed = self.load_and_fill(key, lease, ttl, negative_ttl, load).await;
                    return Ok(refreshed.unwrap_or(entry));
                }
                Lookup::Miss(lease) => {
                    Counters::add(&self.inner.counters.misses);
                    tracing::trace!(target: "reposmith::cache", cache = "miss");
                    return self.load_and_fill(key, lease, ttl, negative_ttl, load).await;
                }
                Lookup::Busy { retry_in } => {
                    Counters::add(&self.inner.counters.waits);
                    let now = Instant::now();
                    if now + retry_in > deadline {
                        return load().await.map(Arc::new);
                    }
                    tokio::time::sleep(retry_in).await;
                }
            }
        }
    }

    async fn load_and_fill<F, Fut>(
        &self,
        key: &EntryKey,
        lease: Lease,
        ttl: Duration,
        negative_ttl: Option<Duration>,
        load: &F,
    ) -> Result<Arc<Entry>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Entry>>,
    {
        // Dropped (the read failed or was cancelled): the lease is given back.
        let guard = LeaseGuard::new(self, key.clone(), lease);
        let started = Instant::now();
        let entry = load().await?;
        let recompute = started.elapsed();
        let ttl = match (&entry, negative_ttl) {
            (Entry::Absent, None) => return Ok(Arc::new(entry)),
            (Entry::Absent, Some(negative)) => negative,
            _ => ttl,
        };
        if let Some(fill) = self.fill_of(key.clone(), guard.lease.clone(), &entry, ttl, recompute) {
            self.fill_all(std::slice::from_ref(&fill)).await;
            guard.disarm();
        }
        Ok(Arc::new(entry))
    }

    fn fill_of(
        &self,
        key: EntryKey,
        lease: Lease,
        entry: &Entry,
        ttl: Duration,
        recompute: Duration,
    ) -> Option<Fill> {
        let value = codec::encode(entry);
        if value.len() > self.inner.options.max_entry_bytes {
            return None;
        }
        let jitter = self.inner.options.ttl_jitter * crate::retry::jitter_fraction();
        let ttl = ttl.mul_f64(1.0 - jitter).max(Duration::from_millis(1));
        Some(Fill {
            key,
            lease,
            value,
            ttl,
            recompute,
        })
    }

    async fn fill_all(&self, fills: &[Fill]) {
        if fills.is_empty() {
            return;
        }
        let Ok(written) = self.call(self.inner.store.fill(fills)).await else {
            return;
        };
        for done in written {
            match done {
                true => Counters::add(&self.inner.counters.fills),
                false => {
                    Counters::add(&self.inner.counters.fills_refused);
                    tracing::debug!(target: "reposmith::cache", cache = "fill refused",
                        "the entry was invalidated after its lookup; not filled");
                }
            }
        }
    }

    /// Counts an unreadable entry and deletes it if it still holds `value`.
    fn undecodable(&self, key: &EntryKey, value: Option<Vec<u8>>) {
        Counters::add(&self.inner.counters.undecodable);
        tracing::debug!(target: "reposmith::cache", cache = "undecodable");
        let Some(value) = value else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, key) = (Arc::clone(&self.inner.store), key.clone());
        let timeout = self.inner.options.response_timeout;
        runtime.spawn(async move {
            let _ = tokio::time::timeout(timeout, store.discard(&key, &value)).await;
        });
    }
}

/// A random lease token.
fn token() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Ends an in-process flight: followers get the entry, or learn the leader
/// failed (or was cancelled) and look up themselves.
struct FlightGuard<'a> {
    cache: &'a Cache,
    key: &'a EntryKey,
    tx: Option<watch::Sender<Flight>>,
}

impl FlightGuard<'_> {
    fn finish(mut self, entry: Option<Arc<Entry>>) {
        if let Some(tx) = self.tx.take() {
            self.remove();
            let _ = tx.send(entry.map_or(Flight::Failed, Flight::Done));
        }
    }

    fn remove(&self) {
        let mut flights = self.cache.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.remove(self.key);
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.remove();
            let _ = tx.send(Flight::Failed);
        }
    }
}

/// A held lease, released on the server if dropped before a fill.
struct LeaseGuard {
    store: Option<Arc<dyn CacheStore>>,
    key: EntryKey,
    lease: Lease,
    timeout: Duration,
}

impl LeaseGuard {
    fn new(cache: &Cache, key: EntryKey, lease: Lease) -> LeaseGuard {
        LeaseGuard {
            store: Some(Arc::clone(&cache.inner.store)),
            key,
            lease,
            timeout: cache.inner.options.response_timeout,
        }
    }

    fn disarm(mut self) {
        self.store = None;
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        // Without a runtime the lease simply expires after its TTL.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (key, lease, timeout) = (self.key.clone(), self.lease.clone(), self.timeout);
        runtime.spawn(async move {
            let _ = tokio::time::timeout(timeout, store.release(&key, &lease)).await;
        });
    }
}
