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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::codec::{self, CachedRow, Entry};
use super::flight::{self, Flights, Role};
use super::key::Keys;
use super::options::CacheOptions;
use super::spec::CacheSpec;
use super::stats::{CacheStats, Counters};
use super::store::{CacheStore, EntryKey, Fill, Invalidation, Lease, Lookup, LookupRequest};
use crate::breaker::Breaker;
use crate::entity::Entity;
use crate::value::FieldType;
use crate::{Error, Result};

/// The repository cache: cheap to clone (clones share the connection,
/// counters and breaker). Built by the facade's `Store` when Redis is
/// configured and handed to the PostgreSQL and MongoDB backends.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
    /// The backend and database whose repositories use this handle (part
    /// of every key), see [`Cache::for_database`].
    namespace: Option<Arc<str>>,
    /// The tenant whose entries of tenant-scoped entities this handle
    /// reads and invalidates, see [`Cache::scoped_to`].
    tenant: Option<Arc<crate::Value>>,
}

struct Inner {
    store: Arc<dyn CacheStore>,
    options: CacheOptions,
    breaker: Breaker,
    counters: Counters,
    /// In-process single flight.
    flights: Flights,
    /// Invalidations of this process that did not reach the server: until
    /// they do, its reads skip the cache (the outbox replays them for other
    /// processes).
    missed: Mutex<Invalidation>,
    /// A reader is retrying `missed` now.
    retrying: AtomicBool,
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
        let breaker = Breaker::new(options.breaker_failures, options.breaker_cooldown);
        Ok(Cache {
            namespace: None,
            tenant: None,
            inner: Arc::new(Inner {
                store,
                options,
                breaker,
                counters: Counters::default(),
                flights: Flights::default(),
                missed: Mutex::new(Invalidation::default()),
                retrying: AtomicBool::new(false),
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

    /// This cache for the repositories of `backend` on the database named
    /// by `database` (host, port and database; never credentials): keys
    /// carry the backend and a short hash of the database, so an entity
    /// stored in both backends, or in two databases behind one Redis (a
    /// database per tenant), keeps apart entries. The backends call it when
    /// a cache is attached.
    pub fn for_database(&self, backend: crate::Backend, database: &str) -> Cache {
        let tag = match backend {
            crate::Backend::Postgres => "pg",
            crate::Backend::Mongo => "mongo",
            _ => "other",
        };
        let hash = super::query_hash([database.as_bytes()]);
        Cache {
            inner: Arc::clone(&self.inner),
            namespace: Some(Arc::from(format!("{tag}.{}", &hash[..8]))),
            tenant: self.tenant.clone(),
        }
    }

    /// This cache as a repository of `E` under `scope` uses it: for a
    /// `#[repo(tenant)]` entity, every key (row entries, the query
    /// generation and query entries) carries the scope's tenant
    /// ([`Keys::in_tenant`]); an entity without a tenant field is shared by
    /// every tenant and keeps its shared keys. A tenant-scoped entity under
    /// a scope without a tenant (refused before anything runs) gets no keys
    /// at all: reads go to the database and nothing is invalidated.
    ///
    /// Why entries are partitioned per tenant rather than shared with a
    /// tenant check on hit: an entry is filled by a database read made
    /// under the reader's scope (and, on PostgreSQL, under row-level
    /// security for the reader's tenant), so it records what *that tenant*
    /// sees for the key. Tenant A's read of B's id finds nothing and caches
    /// "absent"; shared, that entry would hide B's row from B. A check on
    /// hit could guard found rows but neither absent rows nor cached
    /// queries (whose rows already passed the scope), and filling shared
    /// entries would need unscoped reads, which row-level security forbids.
    /// Partitioned, a write through tenant A invalidates A's row entries
    /// and A's query generation only: no other tenant can see the rows
    /// A's repository writes (the tenant is stamped on every write and
    /// cannot be changed), so no other tenant's entry can be stale.
    pub fn scoped_to<E: Entity>(&self, scope: &crate::RowScope) -> Cache {
        let tenant = match E::SCHEMA.tenant_column() {
            Some(_) => scope.tenant().map(|(_, value)| Arc::new(value.clone())),
            None => None,
        };
        Cache {
            inner: Arc::clone(&self.inner),
            namespace: self.namespace.clone(),
            tenant,
        }
    }

    /// The key names of `E`, when it declares `#[repo(cache(..))]` (and,
    /// for a tenant-scoped entity, this handle has its tenant: see
    /// [`Cache::scoped_to`]).
    pub fn keys<E: Entity>(&self) -> Option<Keys> {
        E::SCHEMA.cache.and_then(|_| self.keys_of::<E>())
    }

    /// `E`'s keys on this handle; `None` for a tenant-scoped entity on a
    /// handle without a tenant, whose entries are never read or named.
    fn keys_of<E: Entity>(&self) -> Option<Keys> {
        let namespace = self.namespace.as_deref().unwrap_or("any");
        let keys = Keys::new(&self.inner.options.prefix, namespace, E::SCHEMA.entity);
        match (E::SCHEMA.tenant_column(), &self.tenant) {
            (None, _) => Some(keys),
            (Some(_), Some(tenant)) => Some(keys.in_tenant(tenant)),
            (Some(_), None) => None,
        }
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
        let (Some(spec), Some(keys)) = (E::SCHEMA.cache, self.keys_of::<E>()) else {
            return load().await;
        };
        let key = EntryKey::Row(keys.row(&id.to_value()));
        let policy = Policy::of::<E>(&spec, spec.ttl());
        let entry_of = || async {
            Ok(match load().await? {
                Some(row) => Entry::Row(row.to_values()?),
                None => Entry::Absent,
            })
        };
        let entry = self.single_flight(&key, policy, entry_of).await?;
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
        let (Some(spec), Some(keys)) = (E::SCHEMA.cache, self.keys_of::<E>()) else {
            return load(ids.to_vec()).await;
        };
        if !self.may_read().await {
            Counters::add(&self.inner.counters.bypassed);
            return load(ids.to_vec()).await;
        }
        let policy = Policy::of::<E>(&spec, spec.ttl());
        let mut wanted: Vec<(E::Id, EntryKey)> = Vec::with_capacity(ids.len());
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        for id in ids {
            let name = keys.row(&id.to_value());
            if seen.insert(name.clone()) {
                wanted.push((id.clone(), EntryKey::Row(name)));
            }
        }
        let requests: Vec<LookupRequest> = wanted
            .iter()
            // No early refresh in a batch: it would only take and give back
            // leases (the batch serves its hits as they are).
            .map(|(_, key)| LookupRequest {
                xfetch: 0.0,
                ..self.request(key.clone())
            })
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
                    match codec::decode(&value, spec.shape).map(|entry| match entry {
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
                    missing.push((id, key.clone(), lease(l)));
                }
                Lookup::Busy { .. } => missing.push((id, key, None)),
            }
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
            let entry = match by_key.remove(name) {
                Some(values) => Entry::Row(values),
                None => Entry::Absent,
            };
            let Some(ttl) = policy.ttl_for(&entry) else {
                continue;
            };
            let fill = self.fill_of(key, guard.lease.clone(), &entry, spec.shape, ttl, recompute);
            if let Some(fill) = fill {
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
    pub async fn query<E, F, Fut>(
        &self,
        hash: String,
        ttl: Duration,
        load: F,
    ) -> Result<Vec<CachedRow>>
    where
        E: Entity,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<CachedRow>>>,
    {
        let (Some(spec), Some(keys)) = (E::SCHEMA.cache, self.keys_of::<E>()) else {
            return load().await;
        };
        let key = EntryKey::Query {
            scope: keys.scope(),
            hash,
        };
        // Every write of the entity orphans its cached queries; they expire
        // by TTL, so none outlives the entity's own.
        let policy = Policy::of::<E>(&spec, ttl.min(spec.ttl()));
        let entry_of = || async { Ok(Entry::Rows(load().await?)) };
        let entry = self.single_flight(&key, policy, entry_of).await?;
        match &*entry {
            Entry::Rows(rows) => Ok(rows.clone()),
            _ => {
                self.undecodable(&key, None);
                load().await
            }
        }
    }

    /// Applies `invalidation` now (after a commit): always attempted,
    /// whatever the breaker says, in chunks each bounded by the
    /// invalidation timeout. Returns false when some of it did not reach
    /// the server; this process then keeps it and reads the database until
    /// a retry applies it (the outbox replays it for other processes).
    pub async fn invalidate(&self, invalidation: &Invalidation) -> bool {
        if invalidation.is_empty() {
            return true;
        }
        let mut missed = Invalidation::default();
        for part in invalidation.chunks(INVALIDATION_CHUNK) {
            if !self.apply(&part).await {
                missed.extend(part);
            }
        }
        if missed.is_empty() {
            Counters::add(&self.inner.counters.invalidations);
            return true;
        }
        self.missed(missed);
        false
    }

    /// Arms an invalidation before the write it belongs to is committed:
    /// [`PendingApply::apply`] it once committed, or
    /// [`PendingApply::disarm`] it when the commit is known to have failed.
    /// Dropped armed (the commit's future was cancelled, its outcome
    /// unknown), it counts as missed and is applied on a spawned task.
    pub fn arm(&self, invalidation: Invalidation) -> PendingApply {
        PendingApply {
            cache: self.clone(),
            invalidation: Some(invalidation),
        }
    }

    /// Records a missed invalidation: reads skip the cache until it is applied.
    fn missed(&self, invalidation: Invalidation) {
        Counters::add(&self.inner.counters.invalidations_missed);
        tracing::warn!(
            target: "reposmith::cache",
            cache = "invalidation missed",
            rows = invalidation.rows.len(),
            "cache invalidation did not reach the server; this process reads the database \
             until a retry applies it, the outbox relay replays it for the others"
        );
        let mut pending = self.inner.missed.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend(invalidation);
        pending.dedup();
    }

    /// One chunk of an invalidation, bounded; feeds the breaker.
    async fn apply(&self, invalidation: &Invalidation) -> bool {
        let call = self.inner.store.invalidate(invalidation);
        match tokio::time::timeout(self.inner.options.invalidation_timeout, call).await {
            Ok(Ok(())) => {
                self.inner.breaker.success();
                true
            }
            _ => {
                self.inner.breaker.failure();
                Counters::add(&self.inner.counters.errors);
                false
            }
        }
    }

    /// Whether a read may use the cache now: the breaker lets it through
    /// and no invalidation of this process is missing (one reader at a
    /// time retries a missing one; the others read the database).
    async fn may_read(&self) -> bool {
        let pending = {
            let missed = self.inner.missed.lock().unwrap_or_else(|p| p.into_inner());
            (!missed.is_empty()).then(|| missed.clone())
        };
        let Some(pending) = pending else {
            return self.inner.breaker.allow();
        };
        if !self.inner.breaker.allow() || self.inner.retrying.swap(true, Ordering::AcqRel) {
            return false;
        }
        let mut applied = true;
        for part in pending.chunks(INVALIDATION_CHUNK) {
            applied &= self.apply(&part).await;
        }
        let clear = {
            let mut missed = self.inner.missed.lock().unwrap_or_else(|p| p.into_inner());
            if applied {
                missed.remove_all(&pending);
                Counters::add(&self.inner.counters.invalidations_replayed);
            }
            missed.is_empty()
        };
        self.inner.retrying.store(false, Ordering::Release);
        applied && clear
    }

    /// Applies an invalidation the outbox relay replays; an error is
    /// returned (the relay retries it).
    pub async fn replay(&self, invalidation: &Invalidation) -> Result<()> {
        let timeout = self.inner.options.invalidation_timeout;
        for part in invalidation.chunks(INVALIDATION_CHUNK) {
            let call = self.inner.store.invalidate(&part);
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(Error::Timeout {
                        backend: crate::Backend::Redis,
                        operation: "cache invalidation",
                        after: timeout,
                    });
                }
            }
        }
        Counters::add(&self.inner.counters.invalidations_replayed);
        tracing::debug!(target: "reposmith::cache", cache = "invalidation replayed");
        Ok(())
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

    /// Reads `key` through the in-process single flight (see
    /// [`flight`](super::flight)): a caller shares only a lookup that
    /// started after it arrived.
    async fn single_flight<F, Fut>(
        &self,
        key: &EntryKey,
        policy: Policy,
        load: F,
    ) -> Result<Arc<Entry>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Entry>>,
    {
        let wait = self.inner.options.max_wait;
        let leader = match self.inner.flights.join(key) {
            Role::Lead(leader) => leader,
            Role::LeadNext(running, mut leader) => {
                Counters::add(&self.inner.counters.queued);
                flight::ended(running, wait).await;
                leader.promote();
                leader
            }
            Role::Follow(rx) => {
                Counters::add(&self.inner.counters.coalesced);
                if let Some(entry) = flight::outcome(rx, wait).await {
                    return Ok(entry);
                }
                return self.lookup_and_load(key, policy, &load).await;
            }
        };
        let outcome = self.lookup_and_load(key, policy, &load).await;
        leader.finish(outcome.as_ref().ok().cloned());
        outcome
    }

    async fn lookup_and_load<F, Fut>(
        &self,
        key: &EntryKey,
        policy: Policy,
        load: &F,
    ) -> Result<Arc<Entry>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Entry>>,
    {
        if !self.may_read().await {
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
            match lookup {
                Lookup::Hit { value, refresh } => {
                    let Ok(entry) = codec::decode(&value, policy.shape) else {
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
                    let refreshed = self.load_and_fill(key, lease, policy, load).await;
                    return Ok(refreshed.unwrap_or(entry));
                }
                Lookup::Miss(lease) => {
                    Counters::add(&self.inner.counters.misses);
                    tracing::trace!(target: "reposmith::cache", cache = "miss");
                    return self.load_and_fill(key, lease, policy, load).await;
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
        policy: Policy,
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
        let Some(ttl) = policy.ttl_for(&entry) else {
            return Ok(Arc::new(entry));
        };
        let fill = self.fill_of(
            key.clone(),
            guard.lease.clone(),
            &entry,
            policy.shape,
            ttl,
            recompute,
        );
        if let Some(fill) = fill {
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
        shape: u64,
        ttl: Duration,
        recompute: Duration,
    ) -> Option<Fill> {
        let value = codec::encode(entry, shape);
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

/// How long an entity's entries live.
#[derive(Debug, Clone, Copy)]
struct Policy {
    /// The struct's shape, checked in every entry's header.
    shape: u64,
    ttl: Duration,
    negative_ttl: Option<Duration>,
    /// The `#[repo(ttl)]` column and its lifetime: a cached row must not
    /// outlive the row itself.
    expiry: Option<(usize, u64)>,
}

impl Policy {
    fn of<E: Entity>(spec: &CacheSpec, ttl: Duration) -> Policy {
        Policy {
            shape: spec.shape,
            ttl,
            negative_ttl: spec.negative_ttl(),
            expiry: E::SCHEMA.ttl_column().map(|(i, _, seconds)| (i, seconds)),
        }
    }

    /// How long `entry` may be cached; `None`: not at all (an absent row
    /// without a negative TTL, or a row already past its own expiry).
    fn ttl_for(&self, entry: &Entry) -> Option<Duration> {
        match entry {
            Entry::Absent => self.negative_ttl,
            Entry::Rows(_) => Some(self.ttl),
            Entry::Row(values) => match self.expiry {
                None => Some(self.ttl),
                Some((column, seconds)) => {
                    let Some(crate::Value::TimestampTz(at)) = values.get(column) else {
                        return Some(self.ttl);
                    };
                    let lifetime = chrono::TimeDelta::try_seconds(i64::try_from(seconds).ok()?)?;
                    let left = (*at + lifetime - chrono::Utc::now()).to_std().ok()?;
                    (!left.is_zero()).then(|| left.min(self.ttl))
                }
            },
        }
    }
}

/// A random lease token.
fn token() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Row keys per invalidation call: a large `delete_where` is applied in
/// chunks, each under its own timeout.
const INVALIDATION_CHUNK: usize = 1000;

/// An invalidation armed before its commit; see [`Cache::arm`].
#[must_use = "apply it after the commit, or disarm it when the commit failed"]
#[derive(Debug)]
pub struct PendingApply {
    cache: Cache,
    invalidation: Option<Invalidation>,
}

impl PendingApply {
    /// The commit happened (or may have): applies the invalidation now.
    /// Cancelled while applying, the rest is applied on a spawned task.
    pub async fn apply(mut self) -> bool {
        let Some(invalidation) = self.invalidation.clone() else {
            return true;
        };
        let applied = self.cache.invalidate(&invalidation).await;
        // Applied, or recorded as missed by `invalidate`: done either way.
        self.invalidation = None;
        applied
    }

    /// The commit is known not to have happened: nothing to invalidate.
    pub fn disarm(mut self) {
        self.invalidation = None;
    }
}

impl Drop for PendingApply {
    fn drop(&mut self) {
        let Some(invalidation) = self.invalidation.take() else {
            return;
        };
        if invalidation.is_empty() {
            return;
        }
        // Reads of this process skip the cache until it is applied: by the
        // spawned attempt, or by the next read's retry.
        self.cache.missed(invalidation.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let cache = self.cache.clone();
            runtime.spawn(async move {
                let mut applied = true;
                for part in invalidation.chunks(INVALIDATION_CHUNK) {
                    applied &= cache.apply(&part).await;
                }
                if applied {
                    let mut missed = cache.inner.missed.lock().unwrap_or_else(|p| p.into_inner());
                    missed.remove_all(&invalidation);
                }
            });
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
