//! The repository cache on tenant repositories, on both backends: a
//! tenant's reads are cached in the tenant's own entries (they hit: rows
//! changed behind the repositories' back still read as cached), another
//! tenant's reads of the same ids, filters and searches never see them,
//! and a write through a tenant's repository or unit of work invalidates
//! exactly that tenant's entries (another tenant's still hit).
//!
//! "Changed behind the back" is each fixture's `write_behind`: raw SQL as
//! the table's owner (which row-level security does not bind) or a raw
//! MongoDB update, so only the cache can still return the old body.

use std::time::Duration;

use reposmith::prelude::*;
use reposmith::{DataStore, StoredIn, UnitOfWork, Vector, VectorSearch};

use super::paths::{Seeded, TenantFixture, seed};
use super::{Passage, PassageRepository};

/// A tenancy fixture that can change stored rows without any repository.
pub(crate) trait CacheFixture: TenantFixture {
    /// Sets `body` on `org`'s rows of `topic`, bypassing repositories and
    /// cache (no invalidation).
    async fn write_behind(&self, org: &str, topic: &str, body: &str);
}

type Repo<S> = <S as DataStore>::Repo<Passage>;

const TTL: Duration = Duration::from_secs(60);

/// `repo`'s cached find of topic `topic`, bodies in topic order.
async fn found<R: Repository<Passage>>(repo: &R, topic: &str) -> Vec<Passage> {
    repo.find(Passage::TOPIC.eq(topic))
        .cached(TTL)
        .await
        .unwrap()
}

/// `repo`'s cached nearest-neighbour search from the origin, as (topic, org).
async fn searched<R: Repository<Passage> + VectorSearch<Passage>>(
    repo: &R,
) -> Vec<(String, String)> {
    let hits = repo
        .search_embedding(Vector::from(vec![0.0, 0.0, 0.0]), 10)
        .cached(TTL)
        .await
        .unwrap();
    let mut found: Vec<(String, String)> = hits
        .into_iter()
        .map(|h| (h.entity.topic, h.entity.org))
        .collect();
    found.sort();
    found
}

/// `repo`'s body of row `id`, through the cache.
async fn body<R: Repository<Passage>>(repo: &R, id: &uuid::Uuid) -> Option<String> {
    repo.get(id).await.unwrap().map(|p| p.body)
}

fn pairs(org: &str, topics: &[&str]) -> Vec<(String, String)> {
    topics
        .iter()
        .map(|t| ((*t).to_owned(), org.to_owned()))
        .collect()
}

/// Cached get, get_many, find and search: each tenant fills and hits its
/// own entries, and never reads the other's, including a get of the other
/// tenant's id (an "absent" cached for acme must not hide globex's row from
/// globex) and finds and searches with identical filters.
pub(crate) async fn cached_reads<F: CacheFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
    Repo<F::Store>: VectorSearch<Passage>,
{
    let s = seed(fx).await;
    let (acme, globex) = (&s.acme, &s.globex);
    let (mine, canary) = (&s.mine[0], &s.canaries[0]);
    for _ in 0..2 {
        // The second round reads what the first one cached.
        assert_eq!(acme.get(&canary.id).await.unwrap(), None);
        assert_eq!(globex.get(&canary.id).await.unwrap().as_ref(), Some(canary));
        assert_eq!(globex.get(&mine.id).await.unwrap(), None);
        assert_eq!(acme.get(&mine.id).await.unwrap().as_ref(), Some(mine));
        let both = [mine.id, canary.id];
        assert_eq!(acme.get_many(&both).await.unwrap(), vec![mine.clone()]);
        assert_eq!(globex.get_many(&both).await.unwrap(), vec![canary.clone()]);
        assert_eq!(found(acme, "a").await, vec![mine.clone()]);
        assert_eq!(found(globex, "a").await, vec![canary.clone()]);
        assert_eq!(searched(acme).await, pairs("acme", &["a", "c"]));
        assert_eq!(searched(globex).await, pairs("globex", &["a", "z"]));
    }
    // Served from the cache: rows changed behind the back read as cached,
    // for both tenants, each its own.
    fx.write_behind("acme", "a", "behind").await;
    fx.write_behind("globex", "a", "behind").await;
    assert_eq!(
        body(acme, &mine.id).await,
        Some(mine.body.clone()),
        "acme hits"
    );
    assert_eq!(body(globex, &canary.id).await, Some(canary.body.clone()));
    assert_eq!(
        found(acme, "a").await[0].body,
        mine.body,
        "acme's find hits"
    );
    assert_eq!(found(globex, "a").await[0].body, canary.body);
    assert_eq!(acme.get(&canary.id).await.unwrap(), None);
    assert_eq!(globex.get(&mine.id).await.unwrap(), None);
    // The views beyond the default read the database, never the entries.
    let behind = acme.with_deleted().get(&mine.id).await.unwrap().unwrap();
    assert_eq!(behind.body, "behind");
}

/// Fills acme's and globex's entries for topic `a` (get and find), then
/// changes both rows behind the back: from here a read that misses sees
/// "behind", a read that hits sees what was cached.
async fn fill_both<S: DataStore>(fx: &impl CacheFixture, s: &Seeded<S>)
where
    Passage: StoredIn<S::Home>,
{
    for (repo, row) in [(&s.acme, &s.mine[0]), (&s.globex, &s.canaries[0])] {
        assert_eq!(body(repo, &row.id).await, Some(row.body.clone()));
        assert_eq!(found(repo, "a").await[0].body, row.body);
    }
    fx.write_behind("acme", "a", "behind").await;
    fx.write_behind("globex", "a", "behind").await;
}

/// globex's entries still hit: nothing acme wrote invalidated them.
async fn globex_still_cached<S: DataStore>(s: &Seeded<S>)
where
    Passage: StoredIn<S::Home>,
{
    let canary = &s.canaries[0];
    assert_eq!(
        body(&s.globex, &canary.id).await,
        Some(canary.body.clone()),
        "acme's write invalidated globex's row entry"
    );
    assert_eq!(
        found(&s.globex, "a").await[0].body,
        canary.body,
        "acme's write invalidated globex's cached queries"
    );
}

/// A patch, an update_where and a delete through acme's repository each
/// invalidate acme's row entry and cached queries, and none of globex's.
pub(crate) async fn repository_writes_invalidate_their_tenant<F: CacheFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
{
    let s = seed(fx).await;
    let (acme, mine) = (&s.acme, &s.mine[0]);
    fill_both(fx, &s).await;
    let c = &s.mine[2];
    acme.patch(&c.id, Passage::BODY.set("patched c"))
        .await
        .unwrap();
    assert_eq!(
        found(acme, "a").await[0].body,
        "behind",
        "a patch of c orphans acme's cached queries"
    );
    assert_eq!(
        body(acme, &mine.id).await.unwrap(),
        mine.body,
        "a's entry stays"
    );
    globex_still_cached(&s).await;

    acme.patch(&mine.id, Passage::BODY.set("patched"))
        .await
        .unwrap();
    assert_eq!(body(acme, &mine.id).await.unwrap(), "patched");
    assert_eq!(found(acme, "a").await[0].body, "patched");
    globex_still_cached(&s).await;

    let updated = acme
        .update_where(Passage::TOPIC.eq("a"), Passage::BODY.set("updated"))
        .await
        .unwrap();
    assert_eq!(updated, 1);
    assert_eq!(body(acme, &mine.id).await.unwrap(), "updated");
    assert_eq!(found(acme, "a").await[0].body, "updated");
    globex_still_cached(&s).await;

    assert!(acme.delete(&mine.id).await.unwrap());
    assert_eq!(acme.get(&mine.id).await.unwrap(), None);
    assert!(found(acme, "a").await.is_empty());
    globex_still_cached(&s).await;

    // globex's own write reaches globex's entries.
    s.globex
        .patch(&s.canaries[2].id, Passage::BODY.set("z2"))
        .await
        .unwrap();
    assert_eq!(found(&s.globex, "a").await[0].body, "behind");
}

/// Writes in acme's unit of work (and a nested unit) invalidate acme's
/// entries after COMMIT, and none of globex's.
pub(crate) async fn unit_writes_invalidate_their_tenant<F: CacheFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
{
    let s = seed(fx).await;
    let (acme, mine, c) = (&s.acme, &s.mine[0], &s.mine[2]);
    assert_eq!(body(acme, &c.id).await, Some(c.body.clone()));
    fill_both(fx, &s).await;
    let store = fx.tenant("acme");
    let unit = store.begin().await.unwrap();
    unit.repo::<Passage>()
        .patch(&mine.id, Passage::BODY.set("in unit"))
        .await
        .unwrap();
    if store.capabilities().nested_units {
        let nested = unit.nested().await.unwrap();
        let deleted = nested
            .repo::<Passage>()
            .delete_where(Passage::TOPIC.eq("c"))
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        nested.commit().await.unwrap();
    } else {
        let repo = unit.repo::<Passage>();
        assert_eq!(repo.delete_where(Passage::TOPIC.eq("c")).await.unwrap(), 1);
    }
    // Not before COMMIT.
    assert_eq!(body(acme, &mine.id).await.unwrap(), mine.body);
    unit.commit().await.unwrap();
    assert_eq!(body(acme, &mine.id).await.unwrap(), "in unit");
    assert_eq!(found(acme, "a").await[0].body, "in unit");
    assert_eq!(acme.get(&c.id).await.unwrap(), None, "c's entry dropped");
    globex_still_cached(&s).await;
}

/// One `#[tokio::test]` per body on `$fixture`.
macro_rules! tenant_cache_tests {
    ($fixture:ty; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                use $crate::tenancy::paths::TenantFixture as _;
                let fixture = <$fixture>::setup().await;
                $crate::tenancy::cache::$test(&fixture).await;
                fixture.teardown().await;
            }
        )+
    };
}
pub(crate) use tenant_cache_tests;
