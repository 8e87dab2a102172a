//! The Redis cache store's lease protocol against real servers: the shared
//! Redis (`REDIS_URL`, every test under a prefix of its own), the Redis
//! Cluster of `cargo xtask services up --cluster` (`REDIS_CLUSTER_URLS`;
//! those tests say so and pass when it is not running), and servers of the
//! tests' own for a stopped server and for eviction under `allkeys-lru`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reposmith::redis::cluster_routing::Slot;
use reposmith::{RedisBackend, RedisConfig};
use reposmith_core::cache::{
    CacheOptions, CacheSpec, CacheStore, EntryKey, Fill, Invalidation, Keys, Lease, Lookup,
    LookupRequest, Scope, codec,
};
use reposmith_core::schema::{ColumnDef, ColumnType, EntitySchema, IdStrategy};
use reposmith_core::{Entity, Value};
use reposmith_tests::redis_server::RedisServer;
use reposmith_tests::{redis_url, unique_name};

const SPEC: CacheSpec = CacheSpec::new(60_000, 5_000, 0x5eed);
const LEASE: Duration = Duration::from_secs(5);

/// Options under a prefix no other test uses.
fn options() -> CacheOptions {
    CacheOptions::default().prefix(unique_name("cs"))
}

fn keys(options: &CacheOptions) -> Keys {
    Keys::new(&options.prefix, "pg", "Note")
}

fn row(options: &CacheOptions, id: i64) -> EntryKey {
    EntryKey::Row(keys(options).row(&Value::I64(id)))
}

fn query(options: &CacheOptions, hash: &str) -> EntryKey {
    EntryKey::Query {
        scope: keys(options).scope(),
        hash: hash.to_owned(),
    }
}

fn token() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn request(key: &EntryKey) -> LookupRequest {
    request_with(key, LEASE, 0.0)
}

fn request_with(key: &EntryKey, lease_ttl: Duration, xfetch: f64) -> LookupRequest {
    LookupRequest {
        key: key.clone(),
        token: token(),
        lease_ttl,
        xfetch,
    }
}

fn fill(key: &EntryKey, lease: &Lease, value: &[u8]) -> Fill {
    fill_for(
        key,
        lease,
        value,
        Duration::from_secs(60),
        Duration::from_millis(3),
    )
}

fn fill_for(
    key: &EntryKey,
    lease: &Lease,
    value: &[u8],
    ttl: Duration,
    recompute: Duration,
) -> Fill {
    Fill {
        key: key.clone(),
        lease: lease.clone(),
        value: value.to_vec(),
        ttl,
        recompute,
    }
}

/// An encoded row entry (the store keeps bytes; real ones, for realism).
fn entry(n: i64) -> Vec<u8> {
    codec::encode(
        &codec::Entry::Row(vec![Value::I64(n), Value::Text(format!("note {n}"))]),
        SPEC.shape,
    )
}

async fn lookup_one<S: CacheStore>(store: &S, request: LookupRequest) -> Lookup {
    let mut found = store.lookup(std::slice::from_ref(&request)).await.unwrap();
    assert_eq!(found.len(), 1);
    found.pop().unwrap()
}

async fn miss<S: CacheStore>(store: &S, key: &EntryKey) -> Lease {
    match lookup_one(store, request(key)).await {
        Lookup::Miss(lease) => lease,
        other => panic!("expected a miss for {key:?}, got {other:?}"),
    }
}

async fn fill_one<S: CacheStore>(store: &S, fill: Fill) -> bool {
    let written = store.fill(std::slice::from_ref(&fill)).await.unwrap();
    assert_eq!(written.len(), 1);
    written[0]
}

async fn hit<S: CacheStore>(store: &S, key: &EntryKey) -> Vec<u8> {
    match lookup_one(store, request(key)).await {
        Lookup::Hit {
            value,
            refresh: None,
        } => value,
        other => panic!("expected a hit for {key:?}, got {other:?}"),
    }
}

async fn shared() -> RedisBackend {
    RedisBackend::connect(&RedisConfig::new(redis_url()))
        .await
        .expect("connect to REDIS_URL")
}

/// The cluster backend, or `None` (with the reason printed) when no
/// cluster is running.
async fn cluster() -> Option<RedisBackend> {
    let Some(urls) = std::env::var("REDIS_CLUSTER_URLS")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        println!(
            "skipped: REDIS_CLUSTER_URLS is not set (run `cargo xtask services up --cluster`)"
        );
        return None;
    };
    let nodes: Vec<String> = urls.split(',').map(|u| u.trim().to_owned()).collect();
    let backend = RedisBackend::connect(&RedisConfig::cluster(nodes))
        .await
        .expect("connect to the cluster of REDIS_CLUSTER_URLS");
    Some(backend)
}

// ---------------------------------------------------------------- leases

async fn lease_fill_hit(backend: &RedisBackend) {
    let options = options();
    let store = backend.cache_store(&options);
    for key in [row(&options, 1), query(&options, "aa")] {
        let lease = miss(&store, &key).await;
        assert_eq!(
            lease.generation.is_some(),
            matches!(key, EntryKey::Query { .. })
        );
        assert!(fill_one(&store, fill(&key, &lease, &entry(1))).await);
        assert_eq!(hit(&store, &key).await, entry(1));
        // The lease was used up by the fill.
        assert!(!fill_one(&store, fill(&key, &lease, &entry(2))).await);
        assert_eq!(hit(&store, &key).await, entry(1));
    }
}

#[tokio::test]
async fn a_lease_then_a_fill_then_a_hit() {
    lease_fill_hit(&shared().await).await;
}

#[tokio::test]
async fn a_lease_then_a_fill_then_a_hit_on_the_cluster() {
    let Some(backend) = cluster().await else {
        return;
    };
    lease_fill_hit(&backend).await;
}

async fn invalidation_refuses_fills(backend: &RedisBackend) {
    let options = options();
    let store = backend.cache_store(&options);
    let absent = codec::encode(&codec::Entry::Absent, SPEC.shape);
    // A found row and an absent one: invalidated between lookup and fill.
    for (id, value) in [(1, entry(1)), (2, absent)] {
        let key = row(&options, id);
        let EntryKey::Row(name) = &key else {
            unreachable!()
        };
        let lease = miss(&store, &key).await;
        let rows = Invalidation {
            rows: vec![name.clone()],
            scopes: vec![],
        };
        store.invalidate(&rows).await.unwrap();
        assert!(
            !fill_one(&store, fill(&key, &lease, &value)).await,
            "row {id}"
        );
        // Nothing was cached: the next reader misses and may fill.
        let lease = miss(&store, &key).await;
        assert!(fill_one(&store, fill(&key, &lease, &value)).await);
        assert_eq!(hit(&store, &key).await, value);
        // And an invalidation after the fill drops the entry.
        store.invalidate(&rows).await.unwrap();
        miss(&store, &key).await;
    }
    // A query: the generation changes between lookup and fill.
    let key = query(&options, "bb");
    let EntryKey::Query { scope, .. } = &key else {
        unreachable!()
    };
    let scopes = Invalidation {
        rows: vec![],
        scopes: vec![scope.clone()],
    };
    let first = miss(&store, &key).await;
    store.invalidate(&scopes).await.unwrap();
    assert!(!fill_one(&store, fill(&key, &first, &entry(1))).await);
    let second = miss(&store, &key).await;
    assert_ne!(first.generation, second.generation);
    // Another lookup of the old generation (a concurrent reader) refused too.
    store.invalidate(&scopes).await.unwrap();
    let third = miss(&store, &key).await;
    assert!(!fill_one(&store, fill(&key, &second, &entry(2))).await);
    assert!(fill_one(&store, fill(&key, &third, &entry(3))).await);
    assert_eq!(hit(&store, &key).await, entry(3));
    // A write to the entity orphans the cached query.
    store.invalidate(&scopes).await.unwrap();
    miss(&store, &key).await;
}

#[tokio::test]
async fn an_invalidation_between_lookup_and_fill_refuses_the_fill() {
    invalidation_refuses_fills(&shared().await).await;
}

#[tokio::test]
async fn an_invalidation_between_lookup_and_fill_refuses_the_fill_on_the_cluster() {
    let Some(backend) = cluster().await else {
        return;
    };
    invalidation_refuses_fills(&backend).await;
}

#[tokio::test]
async fn a_second_reader_is_busy_while_the_lease_is_held_and_misses_after_release() {
    let backend = shared().await;
    let options = options();
    let store = backend.cache_store(&options);
    for key in [row(&options, 1), query(&options, "cc")] {
        let lease = miss(&store, &key).await;
        match lookup_one(&store, request(&key)).await {
            Lookup::Busy { retry_in } => {
                assert!(
                    (Duration::from_millis(1)..=Duration::from_millis(50)).contains(&retry_in),
                    "{retry_in:?}"
                );
            }
            other => panic!("expected busy, got {other:?}"),
        }
        store.release(&key, &lease).await.unwrap();
        // Releasing again (or a lease never held) does nothing.
        store.release(&key, &lease).await.unwrap();
        let second = miss(&store, &key).await;
        // The released lease can no longer fill; the new one can.
        assert!(!fill_one(&store, fill(&key, &lease, &entry(1))).await);
        // Releasing a stale lease leaves the holder's lease alone.
        store.release(&key, &lease).await.unwrap();
        assert!(fill_one(&store, fill(&key, &second, &entry(2))).await);
        assert_eq!(hit(&store, &key).await, entry(2));
    }
}

#[tokio::test]
async fn a_lease_expires_after_its_ttl_and_its_key_with_it() {
    let backend = shared().await;
    let options = options();
    let store = backend.cache_store(&options);
    let short = Duration::from_millis(150);
    let key = row(&options, 1);
    let EntryKey::Row(name) = &key else {
        unreachable!()
    };
    let first = match lookup_one(&store, request_with(&key, short, 0.0)).await {
        Lookup::Miss(lease) => lease,
        other => panic!("{other:?}"),
    };
    let Lookup::Busy { retry_in } = lookup_one(&store, request_with(&key, short, 0.0)).await else {
        panic!("a second reader waits while the lease lives");
    };
    assert!(retry_in <= short);
    // A crashed holder: its lease (and the empty key) vanish after lease_ttl.
    tokio::time::sleep(short + Duration::from_millis(50)).await;
    let mut conn = backend.connection();
    let exists: i64 = reposmith::redis::cmd("EXISTS")
        .arg(name)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the expired lease's key is gone");
    let second = match lookup_one(&store, request_with(&key, short, 0.0)).await {
        Lookup::Miss(lease) => lease,
        other => panic!("after expiry the lease passes on: {other:?}"),
    };
    assert!(!fill_one(&store, fill(&key, &first, &entry(1))).await);
    assert!(fill_one(&store, fill(&key, &second, &entry(2))).await);
    assert_eq!(hit(&store, &key).await, entry(2));
}

#[tokio::test]
async fn xfetch_grants_one_refresh_lease_when_the_ttl_is_nearly_gone() {
    let backend = shared().await;
    let options = options();
    let store = backend.cache_store(&options);
    for key in [row(&options, 1), query(&options, "dd")] {
        let lease = miss(&store, &key).await;
        let recompute = Duration::from_millis(20);
        let filled = fill_for(&key, &lease, &entry(1), Duration::from_secs(30), recompute);
        assert!(fill_one(&store, filled).await);
        // 30 s left, 20 ms to recompute: a modest factor never refreshes.
        for xfetch in [0.0, 1.0, 100.0] {
            let Lookup::Hit { refresh, .. } =
                lookup_one(&store, request_with(&key, LEASE, xfetch)).await
            else {
                panic!("a hit");
            };
            assert!(refresh.is_none(), "xfetch {xfetch}");
        }
        // A large one does (30 s <= 20 ms x 1e4), once: the next reader
        // sees the refresh lease held and just hits.
        let big = request_with(&key, LEASE, 1e4);
        let refresh = match lookup_one(&store, big.clone()).await {
            Lookup::Hit {
                value,
                refresh: Some(refresh),
            } => {
                assert_eq!(value, entry(1));
                refresh
            }
            other => panic!("expected a refresh lease, got {other:?}"),
        };
        assert_eq!(refresh.token, big.token);
        let again = request_with(&key, LEASE, 1e4);
        assert!(matches!(
            lookup_one(&store, again).await,
            Lookup::Hit { refresh: None, .. }
        ));
        assert!(fill_one(&store, fill(&key, &refresh, &entry(2))).await);
        assert_eq!(hit(&store, &key).await, entry(2));
    }
}

#[tokio::test]
async fn discard_deletes_only_the_value_it_was_given() {
    let backend = shared().await;
    let options = options();
    let store = backend.cache_store(&options);
    for key in [row(&options, 1), query(&options, "ee")] {
        let lease = miss(&store, &key).await;
        assert!(fill_one(&store, fill(&key, &lease, &entry(1))).await);
        store.discard(&key, &entry(2)).await.unwrap();
        assert_eq!(hit(&store, &key).await, entry(1), "a newer value is kept");
        store.discard(&key, &entry(1)).await.unwrap();
        miss(&store, &key).await;
    }
}

// ---------------------------------------------------------------- batches

async fn batches_across_slots(backend: &RedisBackend) {
    let options = options();
    let store = backend.cache_store(&options);
    let mut keys: Vec<EntryKey> = (0..64).map(|id| row(&options, id)).collect();
    for hash in ["f0", "f1", "f2"] {
        keys.push(query(&options, hash));
    }
    let slots: std::collections::HashSet<Slot> = keys
        .iter()
        .map(|key| match key {
            EntryKey::Row(name) => Slot::for_key(name),
            EntryKey::Query { scope, .. } => Slot::for_key(scope.generation_key()),
        })
        .collect();
    assert!(
        slots.len() > 16,
        "the batch spans many slots: {}",
        slots.len()
    );
    let requests: Vec<LookupRequest> = keys.iter().map(request).collect();
    let found = store.lookup(&requests).await.unwrap();
    let fills: Vec<Fill> = keys
        .iter()
        .zip(found)
        .enumerate()
        .map(|(n, (key, lookup))| match lookup {
            Lookup::Miss(lease) => fill(key, &lease, &entry(n as i64)),
            other => panic!("{key:?}: {other:?}"),
        })
        .collect();
    assert_eq!(store.fill(&fills).await.unwrap(), vec![true; keys.len()]);
    let requests: Vec<LookupRequest> = keys.iter().map(request).collect();
    for (n, lookup) in store
        .lookup(&requests)
        .await
        .unwrap()
        .into_iter()
        .enumerate()
    {
        match lookup {
            Lookup::Hit { value, .. } => assert_eq!(value, entry(n as i64), "entry {n}"),
            other => panic!("entry {n}: {other:?}"),
        }
    }
    // One invalidation of every row and scope, then every lookup misses.
    let invalidation = Invalidation {
        rows: keys
            .iter()
            .filter_map(|k| match k {
                EntryKey::Row(name) => Some(name.clone()),
                EntryKey::Query { .. } => None,
            })
            .collect(),
        scopes: vec![keys_scope(&options)],
    };
    store.invalidate(&invalidation).await.unwrap();
    let requests: Vec<LookupRequest> = keys.iter().map(request).collect();
    for (n, lookup) in store
        .lookup(&requests)
        .await
        .unwrap()
        .into_iter()
        .enumerate()
    {
        assert!(matches!(lookup, Lookup::Miss(_)), "entry {n}: {lookup:?}");
    }
    // Fills of a batch are judged one by one.
    let mixed = vec![
        fill(&keys[0], &stale_lease(), &entry(0)),
        fill(&keys[1], &stale_lease(), &entry(1)),
    ];
    assert_eq!(store.fill(&mixed).await.unwrap(), vec![false, false]);
    assert!(store.lookup(&[]).await.unwrap().is_empty());
    assert!(store.fill(&[]).await.unwrap().is_empty());
    store.invalidate(&Invalidation::default()).await.unwrap();
}

fn keys_scope(options: &CacheOptions) -> Scope {
    keys(options).scope()
}

fn stale_lease() -> Lease {
    Lease {
        token: token(),
        generation: None,
    }
}

#[tokio::test]
async fn a_batch_looks_up_and_fills_many_keys_in_one_call() {
    batches_across_slots(&shared().await).await;
}

#[tokio::test]
async fn a_batch_spans_cluster_slots() {
    let Some(backend) = cluster().await else {
        return;
    };
    batches_across_slots(&backend).await;
}

// ---------------------------------------------------------------- outages

#[tokio::test]
async fn a_stopped_server_fails_fast_with_a_classified_error_and_scripts_reload_after() {
    let mut server = RedisServer::start();
    let config = RedisConfig::new(server.url())
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(300));
    let backend = RedisBackend::connect(&config).await.unwrap();
    let options = options();
    let store = backend.cache_store(&options);
    let key = row(&options, 1);
    let lease = miss(&store, &key).await;
    server.stop();
    let started = Instant::now();
    let error = store.lookup(&[request(&key)]).await.unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    let error = store
        .fill(&[fill(&key, &lease, &entry(1))])
        .await
        .unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    let EntryKey::Row(name) = &key else {
        unreachable!()
    };
    let rows = Invalidation {
        rows: vec![name.clone()],
        scopes: vec![],
    };
    let error = store.invalidate(&rows).await.unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Back up (an empty script cache: NOSCRIPT, then EVAL): the protocol
    // works again; the AOF kept the lease.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    let found = loop {
        match store.lookup(&[request(&key)]).await {
            Ok(found) => break found,
            Err(error) if Instant::now() < deadline => {
                assert!(error.is_unreachable(), "{error:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the store did not come back: {error:?}"),
        }
    };
    assert!(matches!(found[..], [Lookup::Busy { .. }]), "{found:?}");
    assert!(fill_one(&store, fill(&key, &lease, &entry(1))).await);
    assert_eq!(hit(&store, &key).await, entry(1));
}

// ---------------------------------------------------------------- eviction

/// Under `allkeys-lru` with a tiny `maxmemory`, keys are flooded between
/// every lookup and its fill. Eviction may take a lease (the fill is
/// refused) but never lets a fill through after an invalidation; and
/// what is served after an invalidation is never the value from before it.
#[tokio::test]
async fn eviction_can_refuse_a_fill_but_never_admit_a_stale_one() {
    let server = RedisServer::start_with(&[
        "--maxmemory",
        "2mb",
        "--maxmemory-policy",
        "allkeys-lru",
        "--appendonly",
        "no",
    ]);
    let backend = RedisBackend::connect(&RedisConfig::new(server.url()))
        .await
        .unwrap();
    let options = options();
    let store = backend.cache_store(&options);
    let check = store.check().await.unwrap();
    assert_eq!(check.maxmemory_policy.as_deref(), Some("allkeys-lru"));
    assert_eq!(check.evicts, Some(true));
    let mut conn = backend.connection();
    let ballast = vec![b'x'; 8 * 1024];
    let (mut written, mut refused) = (0, 0);
    for round in 0..40i64 {
        let key = match round % 2 {
            0 => row(&options, round),
            _ => query(&options, &format!("{round:x}")),
        };
        let lease = miss(&store, &key).await;
        // Half a megabyte of other keys per round: once the 2 MB are full,
        // the server evicts, sometimes the lease itself.
        let mut flood = reposmith::redis::pipe();
        for n in 0..64 {
            flood
                .cmd("SET")
                .arg(format!("ballast:{round}:{n}"))
                .arg(&ballast)
                .ignore();
        }
        let () = flood.query_async(&mut conn).await.unwrap();
        let invalidated = round % 4 < 2;
        if invalidated {
            let invalidation = match &key {
                EntryKey::Row(name) => Invalidation {
                    rows: vec![name.clone()],
                    scopes: vec![],
                },
                EntryKey::Query { scope, .. } => Invalidation {
                    rows: vec![],
                    scopes: vec![scope.clone()],
                },
            };
            store.invalidate(&invalidation).await.unwrap();
        }
        let filled = fill_one(&store, fill(&key, &lease, &entry(round))).await;
        assert!(
            !(invalidated && filled),
            "round {round}: a fill after an invalidation"
        );
        match filled {
            true => written += 1,
            false => refused += 1,
        }
        // A hit now can only be this round's value, written before no
        // invalidation.
        if let Lookup::Hit { value, .. } = lookup_one(&store, request(&key)).await {
            assert!(filled && value == entry(round), "round {round}");
        }
    }
    let info: String = reposmith::redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let evicted: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    println!("eviction: {written} fills written, {refused} refused, {evicted} keys evicted");
    assert!(evicted > 1000, "the server evicted: {evicted}");
    assert!(refused >= 20, "every invalidated round refused: {refused}");
}

#[tokio::test]
async fn check_reports_the_policy_and_refuses_none() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(&RedisConfig::new(server.url()))
        .await
        .unwrap();
    let check = backend.cache_store(&options()).check().await.unwrap();
    assert_eq!(check.maxmemory_policy.as_deref(), Some("noeviction"));
    assert_eq!(check.evicts, Some(false));
}

// ---------------------------------------------------------------- Cache

/// A hand-written cached entity (the derive is not needed for this).
#[derive(Debug, Clone, PartialEq)]
struct Note {
    id: i64,
    title: String,
}

static NOTE_COLUMNS: [ColumnDef; 2] = [
    ColumnDef::new("id", "id", ColumnType::BigInt, false),
    ColumnDef::new("title", "title", ColumnType::Text, false),
];

static NOTE_SCHEMA: EntitySchema =
    EntitySchema::new("Note", "notes", &NOTE_COLUMNS, 0, IdStrategy::Assigned, &[])
        .with_cache(SPEC);

impl Entity for Note {
    type Id = i64;
    const SCHEMA: &'static EntitySchema = &NOTE_SCHEMA;

    fn id(&self) -> &i64 {
        &self.id
    }

    fn to_values(&self) -> reposmith_core::Result<Vec<Value>> {
        Ok(vec![Value::I64(self.id), Value::Text(self.title.clone())])
    }

    fn from_values(values: Vec<Value>) -> reposmith_core::Result<Self> {
        match <[Value; 2]>::try_from(values) {
            Ok([Value::I64(id), Value::Text(title)]) => Ok(Note { id, title }),
            _ => Err(reposmith_core::Error::invalid("Note", "id", "bad values")),
        }
    }
}

#[tokio::test]
async fn the_cache_reads_through_the_store_and_reloads_after_an_invalidation() {
    let backend = shared().await;
    let cache = backend
        .cache(options().response_timeout(Duration::from_millis(500)))
        .unwrap();
    let loads = Arc::new(AtomicU32::new(0));
    let load = |id: i64| {
        let loads = Arc::clone(&loads);
        move || {
            let loads = Arc::clone(&loads);
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok((id == 1).then(|| Note {
                    id,
                    title: format!("note {id}"),
                }))
            }
        }
    };
    let first = cache.row::<Note, _, _>(&1, load(1)).await.unwrap();
    assert_eq!(first.as_ref().map(|n| n.title.as_str()), Some("note 1"));
    let second = cache.row::<Note, _, _>(&1, load(1)).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(loads.load(Ordering::SeqCst), 1, "the second read is a hit");
    // An absent row is cached too (negative TTL).
    assert_eq!(cache.row::<Note, _, _>(&2, load(2)).await.unwrap(), None);
    assert_eq!(cache.row::<Note, _, _>(&2, load(2)).await.unwrap(), None);
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.fills),
        (2, 2, 2),
        "{stats:?}"
    );
    // A commit's invalidation: the next read loads again.
    let invalidation = cache.invalidation_of::<Note>([&Value::I64(1)]);
    assert!(cache.invalidate(&invalidation).await);
    cache.row::<Note, _, _>(&1, load(1)).await.unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    cache.row::<Note, _, _>(&1, load(1)).await.unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    assert!(!cache.is_degraded());
}
