//! The repository cache on MongoDB against the real servers: a
//! `#[repo(cache(..))]` entity read through a Redis cache on the pool and
//! invalidated by every write (after COMMIT for a unit of work), `.cached`
//! queries keyed per generation, `delete_where` invalidating exactly what it
//! deleted, reads in a unit bypassing the cache, and `.cached` refused on an
//! entity that declares no cache.
//!
//! Each test has its own database and its own key prefix, so its cache
//! counters ([`Cache::stats`]) count its reads only.

use std::time::Duration;

use reposmith::prelude::*;
use reposmith::{Error, MongoBackend, MongoConfig, RedisBackend, RedisConfig, Vector};
use reposmith_core::cache::{Cache, CacheOptions, CacheStats};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::{mongodb_url, redis_url, unique_name};
use uuid::Uuid;

/// A note, cached for a minute and "no such note" for ten seconds.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(
    backend = "mongo",
    collection = "cached_notes",
    cache(ttl = "1m", negative_ttl = "10s")
)]
struct Note {
    #[repo(id)]
    id: Uuid,
    title: String,
    rank: i32,
    #[repo(version)]
    version: i64,
}

/// A point with a vector, cached, for cached searches.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "cached_points", cache(ttl = "1m"))]
struct Spot {
    #[repo(id)]
    id: i64,
    #[repo(vector(dims = 2, distance = "l2", index = "none"))]
    at: Vector,
}

fn note(title: &str, rank: i32) -> Note {
    Note {
        id: Uuid::nil(),
        title: title.to_owned(),
        rank,
        version: 0,
    }
}

/// A database of its own on MongoDB, with a Redis cache under a key prefix
/// of its own attached.
struct Cached {
    mongo: MongoBackend,
    cache: Cache,
}

impl Cached {
    async fn new() -> Cached {
        let config = MongoConfig::new(mongodb_url()).database(unique_name("mcache"));
        let mongo = MongoBackend::connect(&config).await.unwrap();
        let redis = RedisBackend::connect(&RedisConfig::new(redis_url()))
            .await
            .unwrap();
        // Generous timeouts: a loaded CI machine must not open the breaker.
        let options = CacheOptions::default()
            .prefix(unique_name("mc"))
            .response_timeout(Duration::from_secs(2));
        let cache = redis.cache(options).unwrap();
        let mongo = mongo.with_cache(cache.clone());
        Cached { mongo, cache }
    }

    fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    async fn cleanup(self) {
        self.mongo.database().drop().await.unwrap();
        self.mongo.close().await;
    }
}

#[tokio::test]
async fn a_get_misses_once_then_hits() {
    let db = Cached::new().await;
    let notes = db.mongo.repo::<Note>();
    let stored = notes.insert(&note("a", 1)).await.unwrap();
    let before = db.stats();
    assert_eq!(notes.get(&stored.id).await.unwrap(), Some(stored.clone()));
    let after_miss = db.stats();
    assert_eq!(after_miss.misses, before.misses + 1, "{after_miss:?}");
    assert_eq!(after_miss.fills, before.fills + 1, "{after_miss:?}");
    assert_eq!(notes.get(&stored.id).await.unwrap(), Some(stored.clone()));
    let after_hit = db.stats();
    assert_eq!(after_hit.hits, after_miss.hits + 1, "{after_hit:?}");
    assert_eq!(
        after_hit.misses, after_miss.misses,
        "no second database read"
    );
    // get_many: the cached row is a hit, the other one read and filled.
    let other = notes.insert(&note("b", 2)).await.unwrap();
    let mut many = notes.get_many(&[stored.id, other.id]).await.unwrap();
    many.sort_by_key(|n| n.rank);
    assert_eq!(many, vec![stored.clone(), other.clone()]);
    let after_many = db.stats();
    assert_eq!(after_many.hits, after_hit.hits + 1, "{after_many:?}");
    assert_eq!(after_many.misses, after_hit.misses + 1, "{after_many:?}");
    // A repository without the cache reads the database and fills nothing.
    let direct = notes.clone().without_cache();
    assert_eq!(direct.get(&stored.id).await.unwrap(), Some(stored));
    assert_eq!(db.stats(), after_many);
    db.cleanup().await;
}

#[tokio::test]
async fn an_update_through_the_pool_invalidates_the_row() {
    let db = Cached::new().await;
    let notes = db.mongo.repo::<Note>();
    let stored = notes.insert(&note("a", 1)).await.unwrap();
    notes.get(&stored.id).await.unwrap();
    let mut changed = stored.clone();
    changed.rank = 2;
    let changed = notes.update(&changed).await.unwrap();
    assert_eq!(changed.version, stored.version + 1);
    let before = db.stats();
    assert_eq!(notes.get(&stored.id).await.unwrap(), Some(changed.clone()));
    assert_eq!(
        db.stats().misses,
        before.misses + 1,
        "read again after the write"
    );
    // upsert and delete invalidate too.
    let mut upserted = changed.clone();
    upserted.rank = 3;
    let upserted = notes.upsert(&upserted).await.unwrap();
    assert_eq!(notes.get(&stored.id).await.unwrap(), Some(upserted));
    assert!(notes.delete(&stored.id).await.unwrap());
    assert_eq!(notes.get(&stored.id).await.unwrap(), None);
    db.cleanup().await;
}

#[tokio::test]
async fn a_unit_invalidates_after_commit_and_not_on_rollback() {
    let db = Cached::new().await;
    let notes = db.mongo.repo::<Note>();
    let stored = notes.insert(&note("a", 1)).await.unwrap();
    notes.get(&stored.id).await.unwrap();

    let unit = db.mongo.begin().await.unwrap();
    let mut changed = stored.clone();
    changed.rank = 2;
    let changed = unit.repo::<Note>().update(&changed).await.unwrap();
    let invalidations = db.stats().invalidations;
    assert_eq!(
        notes.get(&stored.id).await.unwrap(),
        Some(stored.clone()),
        "the pool sees the committed row until the unit commits"
    );
    unit.commit().await.unwrap();
    assert_eq!(
        db.stats().invalidations,
        invalidations + 1,
        "applied at commit"
    );
    assert_eq!(notes.get(&stored.id).await.unwrap(), Some(changed.clone()));

    let unit = db.mongo.begin().await.unwrap();
    let mut discarded = changed.clone();
    discarded.rank = 3;
    unit.repo::<Note>().update(&discarded).await.unwrap();
    unit.rollback().await.unwrap();
    let before = db.stats();
    assert_eq!(notes.get(&stored.id).await.unwrap(), Some(changed.clone()));
    let after = db.stats();
    assert_eq!(
        after.invalidations, before.invalidations,
        "nothing on rollback"
    );
    assert_eq!(
        after.hits,
        before.hits + 1,
        "the entry survived the rollback"
    );

    // A dropped unit discards its invalidations as well.
    let unit = db.mongo.begin().await.unwrap();
    unit.repo::<Note>().update(&discarded).await.unwrap();
    drop(unit);
    assert_eq!(db.stats().invalidations, after.invalidations);
    db.cleanup().await;
}

#[tokio::test]
async fn an_insert_drops_a_cached_absent_row() {
    let db = Cached::new().await;
    let notes = db.mongo.repo::<Note>();
    let id = Uuid::now_v7();
    assert_eq!(notes.get(&id).await.unwrap(), None);
    let before = db.stats();
    assert_eq!(notes.get(&id).await.unwrap(), None);
    assert_eq!(db.stats().hits, before.hits + 1, "the absent row is cached");
    let stored = notes.insert(&Note { id, ..note("a", 1) }).await.unwrap();
    assert_eq!(notes.get(&id).await.unwrap(), Some(stored));

    // insert_many drops absent rows too.
    let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
    assert!(notes.get_many(&[x, y]).await.unwrap().is_empty());
    let batch = [
        Note {
            id: x,
            ..note("x", 1)
        },
        Note {
            id: y,
            ..note("y", 2)
        },
    ];
    assert_eq!(notes.insert_many(&batch).await.unwrap(), 2);
    assert_eq!(notes.get_many(&[x, y]).await.unwrap().len(), 2);
    db.cleanup().await;
}

#[tokio::test]
async fn a_cached_find_hits_until_a_write() {
    let db = Cached::new().await;
    let notes = db.mongo.repo::<Note>();
    notes.insert(&note("a", 1)).await.unwrap();
    notes.insert(&note("b", 5)).await.unwrap();
    let ttl = Duration::from_secs(60);
    let query = || {
        notes
            .find(Note::RANK.gt(0))
            .order_by(Note::RANK.asc())
            .cached(ttl)
    };
    let first = query().await.unwrap();
    assert_eq!(first.len(), 2);
    let before = db.stats();
    assert_eq!(query().await.unwrap(), first);
    assert_eq!(db.stats().hits, before.hits + 1, "served from the cache");
    // Another query (a limit) is another entry.
    let one = query().limit(1).await.unwrap();
    assert_eq!(one, first[..1].to_vec());
    assert_eq!(db.stats().misses, before.misses + 1);

    notes.insert(&note("c", 9)).await.unwrap();
    let after = query().await.unwrap();
    assert_eq!(after.len(), 3, "the write invalidated the cached result");
    assert_eq!(after[2].title, "c");
    db.cleanup().await;
}

#[tokio::test]
async fn cached_on_an_entity_without_a_cache_is_refused() {
    let db = Cached::new().await;
    let docs = db.mongo.repo::<Doc>();
    let error = docs
        .find(Doc::RANK.eq(1))
        .cached(Duration::from_secs(60))
        .await
        .unwrap_err();
    let Error::InvalidInput { entity, reason, .. } = &error else {
        panic!("expected InvalidInput, got {error:?}");
    };
    assert_eq!(*entity, "Doc");
    assert!(reason.contains("#[repo(cache(..))]"), "{reason}");
    // Uncached, the same query runs.
    assert!(docs.find(Doc::RANK.eq(1)).await.unwrap().is_empty());
    db.cleanup().await;
}

#[tokio::test]
async fn reads_in_a_unit_bypass_the_cache() {
    let db = Cached::new().await;
    let notes = db.mongo.repo::<Note>();
    let stored = notes.insert(&note("a", 1)).await.unwrap();
    notes.get(&stored.id).await.unwrap();
    let before = db.stats();

    let unit = db.mongo.begin().await.unwrap();
    let in_unit = unit.repo::<Note>();
    let mut changed = stored.clone();
    changed.rank = 2;
    let changed = in_unit.update(&changed).await.unwrap();
    assert_eq!(
        in_unit.get(&stored.id).await.unwrap(),
        Some(changed.clone())
    );
    let cached = in_unit
        .find(Note::RANK.eq(2))
        .cached(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cached, vec![changed.clone()], "the unit sees its own write");
    assert_eq!(in_unit.get_many(&[stored.id]).await.unwrap(), vec![changed]);
    let during = db.stats();
    assert_eq!(
        (during.hits, during.misses, during.fills),
        (before.hits, before.misses, before.fills),
        "no cache lookups from a unit: {during:?}"
    );
    unit.rollback().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn delete_where_invalidates_exactly_the_deleted_rows() {
    let db = Cached::new().await;
    let notes = db.mongo.repo::<Note>();
    let mut stored = Vec::new();
    for rank in 1..=4 {
        stored.push(
            notes
                .insert(&note(&format!("n{rank}"), rank))
                .await
                .unwrap(),
        );
    }
    let ids: Vec<Uuid> = stored.iter().map(|n| n.id).collect();
    assert_eq!(notes.get_many(&ids).await.unwrap().len(), 4);
    assert_eq!(notes.delete_where(Note::RANK.ge(3)).await.unwrap(), 2);

    let before = db.stats();
    for kept in &stored[..2] {
        assert_eq!(notes.get(&kept.id).await.unwrap().as_ref(), Some(kept));
    }
    for gone in &stored[2..] {
        assert_eq!(notes.get(&gone.id).await.unwrap(), None);
    }
    let after = db.stats();
    assert_eq!(
        after.hits,
        before.hits + 2,
        "the kept rows stay cached: {after:?}"
    );
    assert_eq!(
        after.misses,
        before.misses + 2,
        "the deleted rows are read: {after:?}"
    );

    // In a unit, after commit.
    let unit = db.mongo.begin().await.unwrap();
    let deleted = unit.repo::<Note>().delete_where(Note::RANK.eq(1)).await;
    assert_eq!(deleted.unwrap(), 1);
    assert_eq!(
        notes.get(&stored[0].id).await.unwrap().as_ref(),
        Some(&stored[0]),
        "not before commit"
    );
    unit.commit().await.unwrap();
    assert_eq!(notes.get(&stored[0].id).await.unwrap(), None);
    assert_eq!(
        notes.get(&stored[1].id).await.unwrap().as_ref(),
        Some(&stored[1])
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_cached_page_and_search_keep_their_order_and_scores() {
    let db = Cached::new().await;
    let notes = db.mongo.repo::<Note>();
    for rank in 1..=5 {
        notes
            .insert(&note(&format!("p{rank}"), rank))
            .await
            .unwrap();
    }
    let ttl = Duration::from_secs(60);
    let page = |after| {
        notes
            .find(Note::RANK.gt(0))
            .order_by(Note::RANK.asc())
            .cached(ttl)
            .page_after(after, 2)
    };
    let first = page(None).await.unwrap();
    let second = page(first.next.clone()).await.unwrap();
    let before = db.stats();
    let again = page(first.next.clone()).await.unwrap();
    assert_eq!(
        db.stats().hits,
        before.hits + 1,
        "the second page is cached"
    );
    assert_eq!(again.items, second.items);
    assert_eq!(again.next, second.next);
    assert_eq!(
        second.items.iter().map(|n| n.rank).collect::<Vec<_>>(),
        [3, 4]
    );

    let spots = db.mongo.repo::<Spot>();
    for (id, x) in [(1, 0.0), (2, 1.0), (3, 3.0)] {
        let at = Vector::from(vec![x, 0.0]);
        spots.insert(&Spot { id, at }).await.unwrap();
    }
    let search = || spots.search_at(Vector::from(vec![0.9, 0.0]), 2).cached(ttl);
    let hits = search().await.unwrap();
    let before = db.stats();
    let cached = search().await.unwrap();
    assert_eq!(db.stats().hits, before.hits + 1, "the search is cached");
    let view = |hits: &[Scored<Spot>]| {
        hits.iter()
            .map(|h| (h.entity.id, h.distance, h.score))
            .collect::<Vec<_>>()
    };
    assert_eq!(view(&cached), view(&hits));
    assert_eq!(cached[0].entity.id, 2);
    spots.delete(&2).await.unwrap();
    let after = search().await.unwrap();
    assert_eq!(after[0].entity.id, 1, "the delete invalidated the search");
    db.cleanup().await;
}

/// `patch` and `update_where` invalidate like `update`: on the pool once
/// written, in a unit after its commit; `update_where` drops exactly the
/// rows it wrote.
#[tokio::test]
async fn patches_and_update_where_invalidate_exactly_the_rows_they_wrote() {
    let db = Cached::new().await;
    let notes = db.mongo.repo::<Note>();
    let mut stored = Vec::new();
    for rank in 1..=4 {
        stored.push(
            notes
                .insert(&note(&format!("n{rank}"), rank))
                .await
                .unwrap(),
        );
    }
    let ids: Vec<Uuid> = stored.iter().map(|n| n.id).collect();
    assert_eq!(notes.get_many(&ids).await.unwrap().len(), 4);

    let patched = notes.patch(&ids[0], Note::RANK.add(10)).await.unwrap();
    assert_eq!(
        notes.get(&ids[0]).await.unwrap(),
        Some(patched),
        "a cached get after a patch"
    );

    assert_eq!(
        notes
            .update_where(Note::RANK.ge(3), Note::TITLE.set("high"))
            .await
            .unwrap(),
        3,
        "ranks 11, 3 and 4"
    );
    let before = db.stats();
    assert_eq!(notes.get(&ids[1]).await.unwrap().as_ref(), Some(&stored[1]));
    assert_eq!(notes.get(&ids[2]).await.unwrap().unwrap().title, "high");
    assert_eq!(notes.get(&ids[3]).await.unwrap().unwrap().title, "high");
    let after = db.stats();
    assert_eq!(
        after.hits,
        before.hits + 1,
        "the untouched row stays cached: {after:?}"
    );

    let unit = db.mongo.begin().await.unwrap();
    unit.repo::<Note>()
        .patch(&ids[1], Note::TITLE.set("in unit"))
        .await
        .unwrap();
    assert_eq!(
        notes.get(&ids[1]).await.unwrap().as_ref(),
        Some(&stored[1]),
        "not before commit"
    );
    unit.commit().await.unwrap();
    assert_eq!(notes.get(&ids[1]).await.unwrap().unwrap().title, "in unit");
    db.cleanup().await;
}
