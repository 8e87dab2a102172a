//! The cache on PostgreSQL repositories, against the real Postgres and
//! Redis: hits and misses, invalidation after commit (never before, nothing
//! on rollback, savepoints), read-your-writes, cached queries, the
//! stale-fill guard driven deterministically (a store whose fills wait at a
//! gate the test opens), durable invalidation replayed after an outage, and
//! a struct changed between builds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reposmith::cache::{
    Cache, CacheOptions, CacheStore, EntryKey, Fill, Invalidation, Lease, Lookup, LookupRequest,
};
use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::prelude::*;
use reposmith::{BoxFuture, PgBackend, RedisBackend, RedisConfig};
use reposmith_tests::redis_server::RedisServer;
use reposmith_tests::{database_url, redis_url, unique_name};
use tokio::sync::Semaphore;

/// A cached entity.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(
    table = "cached_notes",
    backend = "postgres",
    cache(ttl = "1m", negative_ttl = "30s")
)]
pub(crate) struct Note {
    #[repo(id(assigned))]
    pub(crate) id: i64,
    #[repo(unique)]
    pub(crate) slug: String,
    pub(crate) body: String,
    #[repo(version)]
    pub(crate) version: i64,
}

/// The same table, not cached.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "cached_notes", backend = "postgres")]
pub(crate) struct PlainNote {
    #[repo(id(assigned))]
    pub(crate) id: i64,
    #[repo(unique)]
    pub(crate) slug: String,
    pub(crate) body: String,
    #[repo(version)]
    pub(crate) version: i64,
}

fn note(id: i64, body: &str) -> Note {
    Note {
        id,
        slug: format!("note-{id}"),
        body: body.to_owned(),
        version: 0,
    }
}

/// Options for tests that count hits: a Redis call on a loaded 2-core
/// machine can exceed the 50 ms default, which would (correctly) open the
/// breaker and turn an expected hit into a database read.
fn patient() -> CacheOptions {
    let mut options = CacheOptions::default().response_timeout(Duration::from_secs(2));
    options.invalidation_timeout = Duration::from_secs(2);
    options
}

/// A Postgres schema of the test's own with the `Note` table and the
/// outbox, and a cache under a prefix of the test's own.
struct CacheDb {
    pg: PgBackend,
    cache: Cache,
    admin: PgBackend,
    namespace: String,
}

impl CacheDb {
    async fn new() -> CacheDb {
        let redis = RedisBackend::connect(&RedisConfig::new(redis_url()))
            .await
            .unwrap();
        let store = Arc::new(redis.cache_store(&CacheOptions::default()));
        CacheDb::with_store(store, patient()).await
    }

    async fn with_store(store: Arc<dyn CacheStore>, options: CacheOptions) -> CacheDb {
        let options = options.prefix(unique_name("t"));
        let cache = Cache::new(store, options).unwrap();
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("cache");
        let create = format!("CREATE SCHEMA \"{namespace}\"");
        sqlx::raw_sql(AssertSqlSafe(create))
            .execute(admin.pool())
            .await
            .unwrap();
        let url = database_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-c%20search_path%3D{namespace}");
        let pg = PgBackend::connect(
            &reposmith_tests::pg_config(url).max_connections(reposmith_tests::pool_size(8)),
        )
        .await
        .unwrap();
        pg.create_tables::<Note>().await.unwrap();
        pg.create_outbox_tables().await.unwrap();
        let pg = pg.with_cache(cache.clone());
        CacheDb {
            pg,
            cache,
            admin,
            namespace,
        }
    }

    async fn cleanup(self) {
        self.pg.close().await;
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.namespace);
        sqlx::raw_sql(AssertSqlSafe(drop))
            .execute(self.admin.pool())
            .await
            .unwrap();
        self.admin.close().await;
    }

    /// Changes a note behind the repositories' back (no invalidation).
    async fn write_behind(&self, id: i64, body: &str) {
        sqlx::query("UPDATE cached_notes SET body = $1 WHERE id = $2")
            .bind(body)
            .bind(id)
            .execute(self.pg.pool())
            .await
            .unwrap();
    }

    /// Outbox rows carrying cache invalidations.
    async fn invalidation_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM reposmith_outbox WHERE destination = $1")
            .bind(format!("topic:{}", reposmith::cache::INVALIDATION_TOPIC))
            .fetch_one(self.pg.pool())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_get_misses_once_then_hits_and_a_write_behind_is_not_seen_until_invalidated() {
    let db = CacheDb::new().await;
    let notes = db.pg.repo::<Note>();
    notes.insert(&note(1, "first")).await.unwrap();
    let before = db.cache.stats();
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "first");
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "first");
    let after = db.cache.stats();
    assert_eq!(after.misses - before.misses, 1, "{after:?}");
    assert_eq!(after.hits - before.hits, 1, "{after:?}");
    // A change the repositories did not make is not seen: the read was cached.
    db.write_behind(1, "behind").await;
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "first");
    // A write through the repository invalidates after its commit.
    let current = notes
        .clone()
        .without_cache()
        .get(&1)
        .await
        .unwrap()
        .unwrap();
    notes
        .update(&Note {
            body: "second".into(),
            ..current
        })
        .await
        .unwrap();
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "second");
    db.cleanup().await;
}

#[tokio::test]
async fn an_absent_row_is_cached_until_an_insert_invalidates_it() {
    let db = CacheDb::new().await;
    let notes = db.pg.repo::<Note>();
    assert_eq!(notes.get(&7).await.unwrap(), None);
    let hits = db.cache.stats().hits;
    assert_eq!(notes.get(&7).await.unwrap(), None);
    assert_eq!(db.cache.stats().hits, hits + 1, "the absent row is a hit");
    notes.insert(&note(7, "now here")).await.unwrap();
    assert_eq!(notes.get(&7).await.unwrap().unwrap().body, "now here");
    db.cleanup().await;
}

#[tokio::test]
async fn units_invalidate_after_commit_only_and_read_their_own_writes() {
    let db = CacheDb::new().await;
    let notes = db.pg.repo::<Note>();
    let stored = notes.insert(&note(1, "v1")).await.unwrap();
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "v1");

    // Rolled back: nothing invalidated, the cached value is still right.
    let unit = db.pg.begin().await.unwrap();
    unit.repo::<Note>()
        .update(&Note {
            body: "never".into(),
            ..stored.clone()
        })
        .await
        .unwrap();
    let invalidations = db.cache.stats().invalidations;
    unit.rollback().await.unwrap();
    assert_eq!(db.cache.stats().invalidations, invalidations);
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "v1");

    // Inside the unit its own write is seen; outside, the committed value
    // (from the cache) until the commit; after it, the new one.
    let unit = db.pg.begin().await.unwrap();
    let in_unit = unit.repo::<Note>();
    in_unit
        .update(&Note {
            body: "v2".into(),
            ..stored.clone()
        })
        .await
        .unwrap();
    assert_eq!(in_unit.get(&1).await.unwrap().unwrap().body, "v2");
    assert_eq!(
        notes.get(&1).await.unwrap().unwrap().body,
        "v1",
        "not before commit"
    );
    unit.commit().await.unwrap();
    assert_eq!(
        notes.get(&1).await.unwrap().unwrap().body,
        "v2",
        "never stale after commit"
    );
    assert_eq!(
        db.invalidation_rows().await,
        2,
        "the insert's (a pool write: a unit of its own) and the commit's; none for the rollback"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_rolled_back_savepoint_drops_only_its_own_invalidations() {
    let db = CacheDb::new().await;
    let notes = db.pg.repo::<Note>();
    let one = notes.insert(&note(1, "one")).await.unwrap();
    let two = notes.insert(&note(2, "two")).await.unwrap();
    notes.get(&1).await.unwrap();
    notes.get(&2).await.unwrap();
    let unit = db.pg.begin().await.unwrap();
    unit.repo::<Note>()
        .update(&Note {
            body: "one'".into(),
            ..one
        })
        .await
        .unwrap();
    let nested = unit.nested().await.unwrap();
    nested
        .repo::<Note>()
        .update(&Note {
            body: "two'".into(),
            ..two
        })
        .await
        .unwrap();
    nested.rollback().await.unwrap();
    // Behind the cache's back, so a read of 2 shows whether it was invalidated.
    db.write_behind(2, "behind").await;
    unit.commit().await.unwrap();
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "one'");
    assert_eq!(
        notes.get(&2).await.unwrap().unwrap().body,
        "two",
        "2 was not invalidated"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn cached_finds_and_finders_hit_until_any_write_of_the_entity() {
    let db = CacheDb::new().await;
    let notes = db.pg.repo::<Note>();
    notes.insert(&note(1, "a")).await.unwrap();
    notes.insert(&note(2, "b")).await.unwrap();
    let query = || {
        notes
            .find(Note::BODY.ne("zzz"))
            .order_by(Note::ID.asc())
            .cached(Duration::from_secs(60))
    };
    assert_eq!(query().await.unwrap().len(), 2);
    let hits = db.cache.stats().hits;
    assert_eq!(query().await.unwrap().len(), 2);
    assert_eq!(notes.find_by_slug("note-1").await.unwrap().unwrap().id, 1);
    assert_eq!(notes.find_by_slug("note-1").await.unwrap().unwrap().id, 1);
    assert_eq!(
        db.cache.stats().hits,
        hits + 2,
        "the query and the finder's second call hit"
    );
    // Another row's write moves the entity's generation: every cached query reloads.
    notes.insert(&note(3, "c")).await.unwrap();
    assert_eq!(query().await.unwrap().len(), 3);
    db.cleanup().await;
}

#[tokio::test]
async fn a_cached_query_on_an_entity_without_a_cache_is_refused() {
    let db = CacheDb::new().await;
    let plain = db.pg.repo::<PlainNote>();
    let error = plain
        .find(Filter::all())
        .cached(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidInput { ref field, .. } if field == "cached"),
        "{error}"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn delete_where_invalidates_exactly_the_deleted_rows() {
    let db = CacheDb::new().await;
    let notes = db.pg.repo::<Note>();
    for id in 1..=4 {
        notes
            .insert(&note(id, if id % 2 == 0 { "even" } else { "odd" }))
            .await
            .unwrap();
        notes.get(&id).await.unwrap();
    }
    assert_eq!(notes.delete_where(Note::BODY.eq("even")).await.unwrap(), 2);
    db.write_behind(1, "behind").await;
    assert_eq!(notes.get(&2).await.unwrap(), None);
    assert_eq!(notes.get(&4).await.unwrap(), None);
    assert_eq!(
        notes.get(&1).await.unwrap().unwrap().body,
        "odd",
        "1 stayed cached"
    );
    db.cleanup().await;
}

/// A Redis store whose fills wait at a gate the test opens: the
/// "read old row, commit, invalidate, late fill" interleaving on demand.
#[derive(Debug)]
struct GatedFills {
    inner: Arc<dyn CacheStore>,
    armed: AtomicBool,
    /// The next lookup fails (a slow or lost reply).
    fail_lookup: AtomicBool,
    /// Invalidations fail while set (a Redis the invalidation cannot reach).
    fail_invalidations: AtomicBool,
    /// One permit: a fill has reached the gate.
    arrived: Semaphore,
    /// One permit: the fill may go on.
    open: Semaphore,
}

impl GatedFills {
    fn new(inner: Arc<dyn CacheStore>) -> Arc<GatedFills> {
        Arc::new(GatedFills {
            inner,
            armed: AtomicBool::new(false),
            fail_lookup: AtomicBool::new(false),
            fail_invalidations: AtomicBool::new(false),
            arrived: Semaphore::new(0),
            open: Semaphore::new(0),
        })
    }
}

impl CacheStore for GatedFills {
    fn lookup<'a>(&'a self, r: &'a [LookupRequest]) -> BoxFuture<'a, Result<Vec<Lookup>>> {
        if self.fail_lookup.swap(false, Ordering::SeqCst) {
            return Box::pin(async { Err(injected()) });
        }
        self.inner.lookup(r)
    }

    fn fill<'a>(&'a self, fills: &'a [Fill]) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(async move {
            if self.armed.swap(false, Ordering::SeqCst) {
                self.arrived.add_permits(1);
                self.open.acquire().await.unwrap().forget();
            }
            self.inner.fill(fills).await
        })
    }

    fn invalidate<'a>(&'a self, i: &'a Invalidation) -> BoxFuture<'a, Result<()>> {
        if self.fail_invalidations.load(Ordering::SeqCst) {
            return Box::pin(async { Err(injected()) });
        }
        self.inner.invalidate(i)
    }

    fn release<'a>(&'a self, k: &'a EntryKey, l: &'a Lease) -> BoxFuture<'a, Result<()>> {
        self.inner.release(k, l)
    }

    fn discard<'a>(&'a self, k: &'a EntryKey, v: &'a [u8]) -> BoxFuture<'a, Result<()>> {
        self.inner.discard(k, v)
    }
}

/// The failure the store injects, as Redis going away would surface it.
fn injected() -> Error {
    Error::Unavailable {
        backend: reposmith::Backend::Redis,
        reason: "injected by the test".into(),
    }
}

/// Runs `late_read` until its fill waits at the gate, then `write`, then
/// lets the fill go; returns what the late read returned.
async fn race<T: Send + 'static>(
    gate: &Arc<GatedFills>,
    late_read: impl Future<Output = T> + Send + 'static,
    write: impl Future<Output = ()>,
) -> T {
    gate.armed.store(true, Ordering::SeqCst);
    let reader = tokio::spawn(late_read);
    let arrived = tokio::time::timeout(Duration::from_secs(10), gate.arrived.acquire());
    arrived
        .await
        .expect("the read reached its fill")
        .unwrap()
        .forget();
    write.await;
    gate.open.add_permits(1);
    reader.await.unwrap()
}

async fn gated_db() -> (CacheDb, Arc<GatedFills>) {
    let redis = RedisBackend::connect(&RedisConfig::new(redis_url()))
        .await
        .unwrap();
    let real: Arc<dyn CacheStore> = Arc::new(redis.cache_store(&CacheOptions::default()));
    let gate = GatedFills::new(real);
    // A long response timeout: the gate holds the fill, not Redis.
    let options = patient().response_timeout(Duration::from_secs(20));
    let db = CacheDb::with_store(gate.clone(), options).await;
    (db, gate)
}

#[tokio::test]
async fn a_fill_whose_read_predates_a_commit_is_refused() {
    let (db, gate) = gated_db().await;
    let notes = db.pg.repo::<Note>();
    let stored = notes.insert(&note(1, "old")).await.unwrap();
    let reader = notes.clone();
    let late = async move { reader.get(&1).await.unwrap().unwrap().body };
    let write = async {
        notes
            .update(&Note {
                body: "new".into(),
                ..stored.clone()
            })
            .await
            .unwrap();
    };
    let refused = db.cache.stats().fills_refused;
    assert_eq!(
        race(&gate, late, write).await,
        "old",
        "the late read read before the commit"
    );
    assert_eq!(
        db.cache.stats().fills_refused,
        refused + 1,
        "its fill was refused"
    );
    assert_eq!(
        notes.get(&1).await.unwrap().unwrap().body,
        "new",
        "and nothing stale was cached"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_late_fill_of_an_absent_row_created_meanwhile_is_refused() {
    let (db, gate) = gated_db().await;
    let notes = db.pg.repo::<Note>();
    let reader = notes.clone();
    let late = async move { reader.get(&5).await.unwrap() };
    let write = async {
        notes.insert(&note(5, "born")).await.unwrap();
    };
    assert_eq!(race(&gate, late, write).await, None);
    assert_eq!(notes.get(&5).await.unwrap().unwrap().body, "born");
    db.cleanup().await;
}

#[tokio::test]
async fn a_late_fill_of_a_cached_query_after_a_write_is_refused() {
    let (db, gate) = gated_db().await;
    let notes = db.pg.repo::<Note>();
    notes.insert(&note(1, "a")).await.unwrap();
    let reader = notes.clone();
    let late = async move {
        let query = reader.find(Filter::all()).cached(Duration::from_secs(60));
        query.await.unwrap().len()
    };
    let write = async {
        notes.insert(&note(2, "b")).await.unwrap();
    };
    assert_eq!(race(&gate, late, write).await, 1);
    let all = notes
        .find(Filter::all())
        .cached(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "the stale result was not cached");
    db.cleanup().await;
}

#[tokio::test]
async fn an_invalidation_redis_missed_is_replayed_from_the_outbox() {
    // AOF on every write: a restart brings the old entry back, as a
    // failover to a replica that never saw the invalidation would.
    let mut server = RedisServer::start();
    let redis = RedisBackend::connect(&RedisConfig::new(server.url()))
        .await
        .unwrap();
    let store = Arc::new(redis.cache_store(&CacheOptions::default()));
    let options = CacheOptions::default().breaker_cooldown(Duration::from_millis(100));
    let db = CacheDb::with_store(store, options).await;
    let notes = db.pg.repo::<Note>();
    let stored = notes.insert(&note(1, "before")).await.unwrap();
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "before");

    // Redis down: the commit succeeds, its invalidation misses.
    server.stop();
    notes
        .update(&Note {
            body: "after".into(),
            ..stored
        })
        .await
        .unwrap();
    assert_eq!(db.cache.stats().invalidations_missed, 1);
    // Reads never fail, and in this process never serve the old value.
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "after");

    server.restart();
    let answered = async {
        while redis.ping().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answered)
        .await
        .unwrap();
    // Another process (a cache without this one's grace) still finds the
    // old entry: the window the replay closes.
    let other = || {
        let store = Arc::new(redis.cache_store(&CacheOptions::default()));
        let cache = Cache::new(store, db.cache.options().clone()).unwrap();
        db.pg.clone().with_cache(cache).repo::<Note>()
    };
    assert_eq!(other().get(&1).await.unwrap().unwrap().body, "before");

    let relay = reposmith::outbox::Relay::new(&db.pg)
        .topic(
            reposmith::cache::INVALIDATION_TOPIC,
            reposmith::cache::InvalidationReplay::new(db.cache.clone()),
        )
        .unwrap();
    relay.relay_once().await.unwrap();
    assert!(db.cache.stats().invalidations_replayed >= 1);
    assert_eq!(
        db.invalidation_rows().await,
        0,
        "applied invalidations are deleted, not kept for the retention"
    );
    assert_eq!(other().get(&1).await.unwrap().unwrap().body, "after");
    server.stop();
    db.cleanup().await;
}

#[tokio::test]
async fn with_redis_stopped_reads_answer_from_postgres_and_later_calls_skip_it() {
    let mut server = RedisServer::start();
    let redis = RedisBackend::connect(&RedisConfig::new(server.url()))
        .await
        .unwrap();
    let store = Arc::new(redis.cache_store(&CacheOptions::default()));
    let db = CacheDb::with_store(store, CacheOptions::default()).await;
    let notes = db.pg.repo::<Note>();
    notes.insert(&note(1, "kept")).await.unwrap();
    server.stop();
    for _ in 0..50 {
        assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "kept");
    }
    let stats = db.cache.stats();
    assert!(db.cache.is_degraded());
    assert!(stats.bypassed >= 45, "the breaker skipped Redis: {stats:?}");
    db.cleanup().await;
}

mod v2 {
    use reposmith::prelude::*;

    /// `Note` as a later build declares it: one more field.
    #[derive(Debug, Clone, PartialEq, Repository)]
    #[repo(
        table = "cached_notes",
        backend = "postgres",
        cache(ttl = "1m", negative_ttl = "30s")
    )]
    pub(crate) struct Note {
        #[repo(id(assigned))]
        pub(crate) id: i64,
        #[repo(unique)]
        pub(crate) slug: String,
        pub(crate) body: String,
        #[repo(version)]
        pub(crate) version: i64,
        #[repo(skip)]
        pub(crate) draft: bool,
    }
}

#[tokio::test]
async fn a_struct_changed_between_builds_ignores_the_old_entries() {
    let db = CacheDb::new().await;
    let notes = db.pg.repo::<Note>();
    notes.insert(&note(1, "cached by v1")).await.unwrap();
    notes.get(&1).await.unwrap();
    db.write_behind(1, "in the table").await;
    assert_ne!(
        Note::SCHEMA.cache.unwrap().shape,
        v2::Note::SCHEMA.cache.unwrap().shape
    );
    let undecodable = db.cache.stats().undecodable;
    let newer = db.pg.repo::<v2::Note>().get(&1).await.unwrap().unwrap();
    assert_eq!(newer.body, "in the table", "v2 did not read v1's entry");
    assert_eq!(
        db.cache.stats().undecodable,
        undecodable + 1,
        "its shape was refused"
    );
    // Both builds share the key, so a write by either invalidates for both.
    let edited = v2::Note {
        body: "by v2".into(),
        ..newer
    };
    db.pg.repo::<v2::Note>().update(&edited).await.unwrap();
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "by v2");
    db.cleanup().await;
}

#[tokio::test]
async fn a_read_after_a_commit_never_shares_a_lookup_from_before_it() {
    let (db, gate) = gated_db().await;
    let notes = db.pg.repo::<Note>();
    let stored = notes.insert(&note(1, "v1")).await.unwrap();
    // The leader looked up and read v1; its fill waits at the gate.
    gate.armed.store(true, Ordering::SeqCst);
    let leader = notes.clone();
    let early = tokio::spawn(async move { leader.get(&1).await.unwrap().unwrap().body });
    let arrived = tokio::time::timeout(Duration::from_secs(10), gate.arrived.acquire());
    arrived
        .await
        .expect("the leader reached its fill")
        .unwrap()
        .forget();
    let edited = Note {
        body: "v2".into(),
        ..stored
    };
    notes.update(&edited).await.unwrap();
    // Arriving after commit() returned, it must not take the leader's v1.
    let late = notes.get(&1).await.unwrap().unwrap().body;
    gate.open.add_permits(1);
    assert_eq!(late, "v2");
    assert_eq!(
        early.await.unwrap(),
        "v1",
        "the leader's own read predates the commit"
    );
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "v2");
    db.cleanup().await;
}

#[tokio::test]
async fn an_open_breaker_still_sends_invalidations() {
    let (db, gate) = gated_db().await;
    let notes = db.pg.repo::<Note>();
    let stored = notes.insert(&note(1, "v1")).await.unwrap();
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "v1");
    gate.fail_lookup.store(true, Ordering::SeqCst);
    notes.get(&1).await.unwrap();
    assert!(
        db.cache.is_degraded(),
        "one failed lookup opened the breaker"
    );
    let edited = Note {
        body: "v2".into(),
        ..stored
    };
    notes.update(&edited).await.unwrap();
    assert_eq!(db.cache.stats().invalidations_missed, 0);
    // Another process, whose breaker is closed, finds no stale entry.
    let redis = RedisBackend::connect(&RedisConfig::new(redis_url()))
        .await
        .unwrap();
    let other = Cache::new(
        Arc::new(redis.cache_store(&CacheOptions::default())),
        db.cache.options().clone(),
    )
    .unwrap();
    let other_notes = db.pg.clone().with_cache(other).repo::<Note>();
    assert_eq!(other_notes.get(&1).await.unwrap().unwrap().body, "v2");
    db.cleanup().await;
}

#[tokio::test]
async fn a_process_that_missed_an_invalidation_reads_the_database_until_it_is_applied() {
    let (db, gate) = gated_db().await;
    let notes = db.pg.repo::<Note>();
    let stored = notes.insert(&note(1, "v1")).await.unwrap();
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "v1");
    gate.fail_invalidations.store(true, Ordering::SeqCst);
    let edited = Note {
        body: "v2".into(),
        ..stored
    };
    notes.update(&edited).await.unwrap();
    assert_eq!(db.cache.stats().invalidations_missed, 1);
    // Redis answers lookups all along (it still holds v1): whatever the
    // time, this process reads the database while its invalidation is missing.
    let until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < until {
        assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "v2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gate.fail_invalidations.store(false, Ordering::SeqCst);
    let retried = async {
        while db.cache.stats().invalidations_replayed == 0 {
            assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "v2");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), retried)
        .await
        .expect("a read retried it");
    let hits = db.cache.stats().hits;
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "v2");
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "v2");
    assert!(
        db.cache.stats().hits > hits,
        "the cache is used again once it is applied"
    );
    db.cleanup().await;
}

/// `patch` and `update_where` invalidate like `update`: on the pool
/// through a unit of their own, in a unit (and a nested one) after the
/// outermost COMMIT; `update_where` drops exactly the rows it wrote.
#[tokio::test]
async fn patches_and_update_where_invalidate_exactly_the_rows_they_wrote() {
    let db = CacheDb::new().await;
    let notes = db.pg.repo::<Note>();
    for id in 1..=4 {
        notes
            .insert(&note(id, if id % 2 == 0 { "even" } else { "odd" }))
            .await
            .unwrap();
        notes.get(&id).await.unwrap();
    }
    let patched = notes.patch(&1, Note::BODY.set("patched")).await.unwrap();
    assert_eq!(
        notes.get(&1).await.unwrap().unwrap(),
        patched,
        "a cached get after a patch"
    );

    assert_eq!(
        notes
            .update_where(Note::BODY.eq("even"), Note::BODY.set("changed"))
            .await
            .unwrap(),
        2
    );
    db.write_behind(3, "behind").await;
    assert_eq!(notes.get(&2).await.unwrap().unwrap().body, "changed");
    assert_eq!(notes.get(&4).await.unwrap().unwrap().body, "changed");
    assert_eq!(
        notes.get(&3).await.unwrap().unwrap().body,
        "odd",
        "3 stayed cached"
    );

    // In a unit and a nested unit: nothing before the outermost COMMIT.
    let unit = db.pg.begin().await.unwrap();
    unit.repo::<Note>()
        .patch(&1, Note::BODY.set("in unit"))
        .await
        .unwrap();
    let nested = unit.nested().await.unwrap();
    let rows = nested
        .repo::<Note>()
        .update_where(Note::ID.eq(2), Note::BODY.set("in nested"))
        .returning()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    nested.commit().await.unwrap();
    assert_eq!(
        notes.get(&1).await.unwrap().unwrap().body,
        "patched",
        "not before commit"
    );
    assert_eq!(
        notes.get(&2).await.unwrap().unwrap().body,
        "changed",
        "not before commit"
    );
    unit.commit().await.unwrap();
    assert_eq!(notes.get(&1).await.unwrap().unwrap().body, "in unit");
    assert_eq!(notes.get(&2).await.unwrap().unwrap().body, "in nested");
    db.cleanup().await;
}
