//! The near cache (L1, `reposmith-redis`'s feature `near-cache`, which the
//! tests crate turns on) against a `redis-server` of the test's own: two
//! stores stand for two processes.

use std::time::{Duration, Instant};

use reposmith_core::cache::{
    CacheOptions, CacheStore, EntryKey, Fill, Invalidation, Lookup, LookupRequest, Scope,
};
use reposmith_redis::cache::{NearCacheOptions, RedisCacheStore};
use reposmith_redis::{RedisBackend, RedisConfig, redis};
use reposmith_tests::redis_server::RedisServer;

async fn backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(&RedisConfig::new(server.url()))
        .await
        .expect("connect")
}

/// A store with an L1 of `ttl`, once its subscriber is subscribed.
async fn near_store(backend: &RedisBackend, ttl: Duration) -> RedisCacheStore {
    let options = CacheOptions::default().prefix("near");
    let store = backend
        .cache_store(&options)
        .with_near_cache(NearCacheOptions::default().ttl(ttl))
        .expect("a near cache");
    until(|| async { store.near_cache_live() }).await;
    store
}

/// Waits (at most 2 s) until `check` holds.
async fn until<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(2);
    while !check().await {
        assert!(Instant::now() < deadline, "condition not met within 2 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn request(key: &EntryKey) -> LookupRequest {
    LookupRequest {
        key: key.clone(),
        token: format!("t{}", rand_suffix()),
        lease_ttl: Duration::from_secs(5),
        xfetch: 0.0,
    }
}

fn rand_suffix() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    nanos * 1000 + u128::from(N.fetch_add(1, Ordering::Relaxed))
}

async fn look(store: &RedisCacheStore, key: &EntryKey) -> Lookup {
    store.lookup(&[request(key)]).await.unwrap().pop().unwrap()
}

/// The value `store` serves for `key`, or `None` for a miss.
async fn served(store: &RedisCacheStore, key: &EntryKey) -> Option<Vec<u8>> {
    match look(store, key).await {
        Lookup::Hit { value, .. } => Some(value),
        Lookup::Miss(lease) => {
            store.release(key, &lease).await.unwrap();
            None
        }
        Lookup::Busy { .. } => None,
    }
}

/// Fills `key` with `value` through `store` (it must miss).
async fn put(store: &RedisCacheStore, key: &EntryKey, value: &[u8]) {
    let Lookup::Miss(lease) = look(store, key).await else {
        panic!("expected a miss");
    };
    let fill = Fill {
        key: key.clone(),
        lease,
        value: value.to_vec(),
        ttl: Duration::from_secs(60),
        recompute: Duration::from_millis(1),
    };
    assert_eq!(store.fill(&[fill]).await.unwrap(), vec![true]);
}

/// Rewrites the value in Redis without any invalidation: only a store that
/// asks Redis sees it.
async fn behind_the_back(backend: &RedisBackend, key: &str, value: &[u8]) {
    let mut conn = backend.connection();
    let _: i64 = redis::cmd("HSET")
        .arg(key)
        .arg("v")
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_l1_hit_skips_redis_and_another_process_invalidation_evicts_it() {
    let server = RedisServer::start();
    let (a_backend, b_backend) = (backend(&server).await, backend(&server).await);
    let a = near_store(&a_backend, Duration::from_secs(30)).await;
    let b = near_store(&b_backend, Duration::from_secs(30)).await;
    let key = EntryKey::Row("near:c:Note:1:r:1".into());
    put(&a, &key, b"one").await;
    assert_eq!(served(&b, &key).await.as_deref(), Some(&b"one"[..]));
    behind_the_back(&a_backend, key.as_str(), b"two").await;
    // B's L1 answers; A has no L1 entry yet and reads Redis.
    assert_eq!(served(&b, &key).await.as_deref(), Some(&b"one"[..]));
    assert_eq!(served(&a, &key).await.as_deref(), Some(&b"two"[..]));
    // A commit's invalidation in A: B hears of it and misses.
    let rows = Invalidation {
        rows: vec![key.as_str().to_owned()],
        scopes: vec![],
    };
    let sent = Instant::now();
    a.invalidate(&rows).await.unwrap();
    until(|| async { served(&b, &key).await.is_none() }).await;
    println!(
        "fan-out reached the other store within {:?}",
        sent.elapsed()
    );
    // A's own L1 was evicted before invalidate returned.
    assert_eq!(served(&a, &key).await, None);

    // A cached query, and an invalidation of its scope.
    let query = EntryKey::Query {
        scope: Scope("{near:c:Note:1}".into()),
        hash: "abc".into(),
    };
    put(&a, &query, b"rows").await;
    assert_eq!(served(&b, &query).await.as_deref(), Some(&b"rows"[..]));
    let scopes = Invalidation {
        rows: vec![],
        scopes: vec![Scope("{near:c:Note:1}".into())],
    };
    a.invalidate(&scopes).await.unwrap();
    until(|| async { served(&b, &query).await.is_none() }).await;
}

#[tokio::test]
async fn an_l1_entry_lives_no_longer_than_the_near_ttl() {
    let server = RedisServer::start();
    let backend = backend(&server).await;
    let store = near_store(&backend, Duration::from_millis(200)).await;
    let key = EntryKey::Row("near:c:Note:1:r:2".into());
    put(&store, &key, b"one").await;
    assert_eq!(served(&store, &key).await.as_deref(), Some(&b"one"[..]));
    behind_the_back(&backend, key.as_str(), b"two").await;
    assert_eq!(served(&store, &key).await.as_deref(), Some(&b"one"[..]));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(served(&store, &key).await.as_deref(), Some(&b"two"[..]));
}

#[tokio::test]
async fn a_lost_subscription_clears_l1_and_reads_redis_until_it_is_back() {
    let server = RedisServer::start();
    let backend = backend(&server).await;
    let store = near_store(&backend, Duration::from_secs(30)).await;
    let key = EntryKey::Row("near:c:Note:1:r:3".into());
    put(&store, &key, b"one").await;
    assert_eq!(served(&store, &key).await.as_deref(), Some(&b"one"[..]));
    behind_the_back(&backend, key.as_str(), b"two").await;
    assert_eq!(served(&store, &key).await.as_deref(), Some(&b"one"[..]));
    // The subscriber's connection drops: messages may have been lost, so
    // L1 is cleared (and bypassed until subscribed again).
    let mut conn = backend.connection();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    until(|| async { served(&store, &key).await.as_deref() == Some(&b"two"[..]) }).await;
    // Subscribed again: L1 serves once more.
    until(|| async { store.near_cache_live() }).await;
    assert_eq!(served(&store, &key).await.as_deref(), Some(&b"two"[..]));
    behind_the_back(&backend, key.as_str(), b"three").await;
    assert_eq!(served(&store, &key).await.as_deref(), Some(&b"two"[..]));
}

#[tokio::test]
async fn a_store_without_l1_publishes_only_when_asked() {
    let server = RedisServer::start();
    let (a_backend, b_backend) = (backend(&server).await, backend(&server).await);
    let options = CacheOptions::default().prefix("near");
    let quiet = a_backend.cache_store(&options);
    let loud = a_backend.cache_store(&options).publish_invalidations(true);
    let b = near_store(&b_backend, Duration::from_secs(30)).await;
    let key = EntryKey::Row("near:c:Note:1:r:4".into());
    let rows = Invalidation {
        rows: vec![key.as_str().to_owned()],
        scopes: vec![],
    };
    put(&quiet, &key, b"one").await;
    assert_eq!(served(&b, &key).await.as_deref(), Some(&b"one"[..]));
    quiet.invalidate(&rows).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Not told: B's L1 keeps the old value (the documented cost).
    assert_eq!(served(&b, &key).await.as_deref(), Some(&b"one"[..]));
    loud.invalidate(&rows).await.unwrap();
    until(|| async { served(&b, &key).await.is_none() }).await;
}

#[tokio::test]
async fn near_cache_options_are_checked() {
    let server = RedisServer::start();
    let backend = backend(&server).await;
    let store = backend.cache_store(&CacheOptions::default());
    assert!(!store.near_cache_live());
    let zero = NearCacheOptions::default().ttl(Duration::ZERO);
    assert!(store.clone().with_near_cache(zero).is_err());
    let none = NearCacheOptions::default().max_entries(0);
    assert!(store.with_near_cache(none).is_err());
}

#[tokio::test]
async fn the_fan_out_works_on_a_cluster() {
    let Some(urls) = std::env::var("REDIS_CLUSTER_URLS")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        println!(
            "skipped: REDIS_CLUSTER_URLS is not set (run `cargo xtask services up --cluster`)"
        );
        return;
    };
    let nodes: Vec<String> = urls.split(',').map(|u| u.trim().to_owned()).collect();
    let config = RedisConfig::cluster(nodes);
    let a_backend = RedisBackend::connect(&config).await.unwrap();
    let b_backend = RedisBackend::connect(&config).await.unwrap();
    let prefix = format!("near{}", rand_suffix());
    let options = CacheOptions::default().prefix(prefix.clone());
    let near = || NearCacheOptions::default().ttl(Duration::from_secs(30));
    let a = a_backend
        .cache_store(&options)
        .with_near_cache(near())
        .unwrap();
    let b = b_backend
        .cache_store(&options)
        .with_near_cache(near())
        .unwrap();
    until(|| async { a.near_cache_live() && b.near_cache_live() }).await;
    // Rows in many slots: the message reaches B whichever node it left from.
    let keys: Vec<EntryKey> = (0..8)
        .map(|n| EntryKey::Row(format!("{prefix}:c:Note:1:r:{n}")))
        .collect();
    for key in &keys {
        put(&a, key, b"one").await;
        assert_eq!(served(&b, key).await.as_deref(), Some(&b"one"[..]));
        // From B's L1 from now on.
        behind_the_back(&a_backend, key.as_str(), b"two").await;
        assert_eq!(served(&b, key).await.as_deref(), Some(&b"one"[..]));
    }
    let rows = Invalidation {
        rows: keys.iter().map(|k| k.as_str().to_owned()).collect(),
        scopes: vec![],
    };
    a.invalidate(&rows).await.unwrap();
    for key in &keys {
        until(|| async { served(&b, key).await.is_none() }).await;
    }
}
