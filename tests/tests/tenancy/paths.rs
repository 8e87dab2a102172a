//! The tenancy bodies, written once against `DataStore` and run on each
//! backend by `tenancy_tests!`. Tenant `acme` works; tenant `globex` owns
//! the canary rows, which must come out of every test exactly as they went in.

use futures_util::TryStreamExt;
use reposmith::prelude::*;
use reposmith::{DataStore, Error, RetryPolicy, StoredIn, UnitOfWork, Vector, VectorSearch};

use super::{Passage, PassageRepository};

/// What a backend's tenancy test needs: fresh storage and tenant handles.
pub(crate) trait TenantFixture: Sized {
    /// The backend handle type.
    type Store: DataStore;

    /// Fresh, empty storage with the table (or collection) and its indexes.
    async fn setup() -> Self;

    /// The handle without a tenant.
    fn unscoped(&self) -> Self::Store;

    /// The handle for `tenant`.
    fn tenant(&self, tenant: &str) -> Self::Store;

    /// Drops what `setup` made.
    async fn teardown(self);
}

type Repo<S> = <S as DataStore>::Repo<Passage>;

/// Two tenants' rows: acme's `a`, `b`, `c` (b deleted) and globex's
/// canaries, one per state, placed nearest to every query acme makes.
pub(crate) struct Seeded<S: DataStore> {
    pub(crate) acme: Repo<S>,
    pub(crate) globex: Repo<S>,
    pub(crate) mine: Vec<Passage>,
    pub(crate) canaries: Vec<Passage>,
}

pub(crate) async fn seed<F: TenantFixture>(fx: &F) -> Seeded<F::Store>
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
{
    let acme = fx.tenant("acme").repo::<Passage>();
    let globex = fx.tenant("globex").repo::<Passage>();
    let mut mine = Vec::new();
    for (topic, at) in [("a", 1.0), ("b", 2.0), ("c", 3.0)] {
        mine.push(acme.insert(&Passage::new(topic, at)).await.unwrap());
    }
    assert!(acme.delete(&mine[1].id).await.unwrap());
    let mut canaries = Vec::new();
    for (topic, at) in [("a", 1.0), ("b", 2.0), ("z", 0.0)] {
        canaries.push(globex.insert(&Passage::new(topic, at)).await.unwrap());
    }
    assert!(globex.delete(&canaries[1].id).await.unwrap());
    let canaries = globex
        .with_deleted()
        .get_many(&canaries.iter().map(|c| c.id).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(canaries.len(), 3);
    Seeded {
        acme,
        globex,
        mine,
        canaries,
    }
}

impl<S: DataStore> Seeded<S> {
    fn canary_ids(&self) -> Vec<uuid::Uuid> {
        self.canaries.iter().map(|c| c.id).collect()
    }

    /// The canaries are stored exactly as they were seeded.
    pub(crate) async fn assert_canaries_untouched(&self) {
        let mut now = self
            .globex
            .with_deleted()
            .get_many(&self.canary_ids())
            .await
            .unwrap();
        let mut then = self.canaries.clone();
        now.sort_by_key(|c| c.id);
        then.sort_by_key(|c| c.id);
        assert_eq!(now, then, "globex's rows changed");
    }
}

fn no_canary(found: &[Passage]) {
    assert!(
        found.iter().all(|p| p.org == "acme"),
        "another tenant's row came back: {found:?}"
    );
}

fn topics(found: &[Passage]) -> Vec<String> {
    let mut topics: Vec<String> = found.iter().map(|p| p.topic.clone()).collect();
    topics.sort();
    topics
}

/// get, get_many, the finder, find, count, exists, stream and keyset pages.
pub(crate) async fn reads<F: TenantFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
{
    let s = seed(fx).await;
    let repo = &s.acme;
    for view in [repo.clone(), repo.with_deleted()] {
        for canary in &s.canaries {
            assert_eq!(view.get(&canary.id).await.unwrap(), None);
        }
        assert!(view.get_many(&s.canary_ids()).await.unwrap().is_empty());
        no_canary(&view.find(Filter::all()).await.unwrap());
        no_canary(&view.find_all_by_topic("a").await.unwrap());
        assert!(!view.exists(Passage::TOPIC.eq("z")).await.unwrap());
        let streamed: Vec<Passage> = view
            .stream(view.find(Filter::all()).into_query())
            .try_collect()
            .await
            .unwrap();
        no_canary(&streamed);
        let mut cursor = None;
        let mut paged = Vec::new();
        loop {
            let page = view
                .find(Filter::all())
                .order_by(Passage::TOPIC.asc())
                .page_after(cursor, 1)
                .await
                .unwrap();
            paged.extend(page.items);
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        no_canary(&paged);
    }
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 2);
    assert_eq!(repo.with_deleted().count(Filter::all()).await.unwrap(), 3);
    // A caller's filter naming the other tenant cannot widen the scope.
    let named = repo.find(Passage::ORG.eq("globex")).await.unwrap();
    assert!(named.is_empty());
    assert_eq!(topics(&repo.find(Filter::all()).await.unwrap()), ["a", "c"]);
    s.assert_canaries_untouched().await;
}

/// Vector search, plain and paged, never returns the canary nearest to the query.
pub(crate) async fn vector_search<F: TenantFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
    Repo<F::Store>: VectorSearch<Passage>,
{
    let s = seed(fx).await;
    let query = || Vector::from(vec![0.0, 0.0, 0.0]);
    let hits = s.acme.search_embedding(query(), 10).await.unwrap();
    let found: Vec<Passage> = hits.into_iter().map(|h| h.entity).collect();
    assert_eq!(topics(&found), ["a", "c"]);
    let filtered = s
        .acme
        .search_embedding(query(), 10)
        .filter(Passage::TOPIC.eq("a"))
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].entity.org, "acme");
    let page = s
        .acme
        .with_deleted()
        .search_embedding(query(), 1)
        .page_after(None)
        .await
        .unwrap();
    assert_eq!(page.items[0].entity.topic, "a", "not globex's z at 0");
    s.assert_canaries_untouched().await;
}

/// Full-text and hybrid search (PostgreSQL).
pub(crate) async fn text_and_hybrid_search<F: TenantFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
    Repo<F::Store>: VectorSearch<Passage>,
{
    let s = seed(fx).await;
    let hits = s.acme.search_text("penguins", 10).await.unwrap();
    let found: Vec<Passage> = hits.into_iter().map(|h| h.entity).collect();
    assert_eq!(topics(&found), ["a", "c"]);
    let hits = s
        .acme
        .with_deleted()
        .search_text("penguins", 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
    let query = Vector::from(vec![0.0, 0.0, 0.0]);
    let hits = s.acme.search_hybrid("penguins", query, 10).await.unwrap();
    let found: Vec<Passage> = hits.into_iter().map(|h| h.entity).collect();
    assert_eq!(topics(&found), ["a", "c"]);
}

/// Writes stamp the tenant; an entity of another tenant is refused; by-id
/// writes aimed at a canary change nothing.
pub(crate) async fn writes<F: TenantFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
{
    let s = seed(fx).await;
    let repo = &s.acme;
    assert!(s.mine.iter().all(|p| p.org == "acme"), "insert stamped");
    let mut foreign = Passage::new("x", 5.0);
    foreign.org = "globex".into();
    let refused = repo.insert(&foreign).await;
    assert!(
        matches!(&refused, Err(Error::InvalidInput { field, .. }) if field == "org"),
        "{refused:?}"
    );
    let mut own = Passage::new("x", 5.0);
    own.org = "acme".into();
    assert_eq!(repo.insert(&own).await.unwrap().org, "acme");
    let many = [Passage::new("m1", 6.0), Passage::new("m2", 7.0)];
    assert_eq!(repo.insert_many(&many).await.unwrap(), 2);
    assert_eq!(
        repo.count(Passage::TOPIC.is_in(["m1", "m2"]))
            .await
            .unwrap(),
        2
    );
    let refused = repo
        .insert_many(&[Passage::new("m3", 1.0), foreign.clone()])
        .await;
    assert!(
        matches!(&refused, Err(Error::InvalidInput { row: Some(r), .. }) if r.index == 1),
        "{refused:?}"
    );
    // By id, at a canary: nothing happens.
    let canary = s.canaries[0].clone();
    let mut hijack = canary.clone();
    hijack.org = String::new();
    hijack.body = "hijacked".into();
    assert!(matches!(
        repo.update(&hijack).await,
        Err(Error::NotFound { .. })
    ));
    assert!(repo.upsert(&hijack).await.is_err(), "upsert over a canary");
    assert!(!repo.delete(&canary.id).await.unwrap());
    assert!(!repo.restore(&s.canaries[1].id).await.unwrap());
    assert!(!repo.purge(&canary.id).await.unwrap());
    // A caller's tenant field cannot move an own row to another tenant.
    let mut moved = repo.get(&s.mine[0].id).await.unwrap().unwrap();
    moved.org = "globex".into();
    assert!(matches!(
        repo.update(&moved).await,
        Err(Error::InvalidInput { .. })
    ));
    // Own rows still change.
    let mut a = repo.get(&s.mine[0].id).await.unwrap().unwrap();
    a.body = "edited".into();
    assert_eq!(repo.update(&a).await.unwrap().body, "edited");
    let mut up = Passage::new("u", 8.0);
    up.id = uuid::Uuid::now_v7();
    assert_eq!(repo.upsert(&up).await.unwrap().org, "acme");
    s.assert_canaries_untouched().await;
}

/// delete_where and purge_deleted reach the tenant's rows only.
pub(crate) async fn deletes<F: TenantFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
{
    let s = seed(fx).await;
    assert_eq!(s.acme.delete_where(Filter::all()).await.unwrap(), 2);
    assert_eq!(
        s.acme
            .purge_deleted(std::time::Duration::ZERO)
            .await
            .unwrap(),
        3
    );
    assert_eq!(s.acme.with_deleted().count(Filter::all()).await.unwrap(), 0);
    s.assert_canaries_untouched().await;
}

/// patch and update_where change the tenant's live rows only, and never
/// the tenant column.
pub(crate) async fn partial_updates<F: TenantFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
{
    let s = seed(fx).await;
    let repo = &s.acme;
    for canary in &s.canaries {
        let missed = repo.patch(&canary.id, Passage::BODY.set("hijacked")).await;
        assert!(matches!(missed, Err(Error::NotFound { .. })), "{missed:?}");
        let missed = repo
            .with_deleted()
            .patch(&canary.id, Passage::BODY.set("hijacked"))
            .await;
        assert!(matches!(missed, Err(Error::NotFound { .. })), "{missed:?}");
    }
    // acme's live rows: a and c (b is deleted).
    let changed = repo
        .update_where(Filter::all(), Passage::BODY.set("patched"))
        .returning()
        .await
        .unwrap();
    no_canary(&changed);
    assert_eq!(topics(&changed), ["a", "c"]);
    let moved = repo
        .update_where(Filter::all(), Passage::ORG.set("globex"))
        .await;
    assert!(
        matches!(&moved, Err(Error::InvalidInput { field, .. }) if field == "org"),
        "{moved:?}"
    );
    let own = repo.patch(&s.mine[0].id, Passage::BODY.set("mine")).await;
    assert_eq!(own.unwrap().org, "acme");
    let unscoped = fx.unscoped().repo::<Passage>();
    let refused = unscoped
        .patch(&s.canaries[0].id, Passage::BODY.set("x"))
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidInput { .. })),
        "{refused:?}"
    );
    s.assert_canaries_untouched().await;
}

/// Units of work, nested units and retried transactions carry the tenant.
pub(crate) async fn units<F: TenantFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
{
    let s = seed(fx).await;
    let store = fx.tenant("acme");
    let unit = store.begin().await.unwrap();
    let repo = unit.repo::<Passage>();
    no_canary(&repo.find(Filter::all()).await.unwrap());
    assert_eq!(repo.get(&s.canaries[0].id).await.unwrap(), None);
    assert_eq!(
        repo.insert(&Passage::new("u", 9.0)).await.unwrap().org,
        "acme"
    );
    if store.capabilities().nested_units {
        let nested = unit.nested().await.unwrap();
        let inner = nested.repo::<Passage>();
        assert_eq!(inner.count(Filter::all()).await.unwrap(), 3);
        assert_eq!(inner.delete_where(Filter::all()).await.unwrap(), 3);
        assert_eq!(
            inner.insert(&Passage::new("n", 9.5)).await.unwrap().org,
            "acme"
        );
        nested.commit().await.unwrap();
    } else {
        assert_eq!(repo.delete_where(Filter::all()).await.unwrap(), 3);
    }
    unit.commit().await.unwrap();
    let counted = store
        .transaction(RetryPolicy::default(), |unit| {
            Box::pin(async move {
                let repo = unit.repo::<Passage>();
                repo.with_deleted().count(Filter::all()).await
            })
        })
        .await
        .unwrap();
    assert!(counted >= 4, "{counted}");
    s.assert_canaries_untouched().await;
}

/// A repository of a tenant-scoped entity taken without a tenant refuses
/// every operation before anything is sent.
pub(crate) async fn without_a_tenant<F: TenantFixture>(fx: &F)
where
    Passage: StoredIn<<F::Store as DataStore>::Home>,
{
    let s = seed(fx).await;
    let repo = fx.unscoped().repo::<Passage>();
    let refused = |outcome: Result<(), Error>| {
        assert!(
            matches!(&outcome, Err(Error::InvalidInput { field, .. }) if field == "org"),
            "{outcome:?}"
        );
    };
    let id = s.canaries[0].id;
    refused(repo.get(&id).await.map(drop));
    refused(repo.get_many(&[id]).await.map(drop));
    refused(repo.find(Filter::all()).await.map(drop));
    refused(repo.count(Filter::all()).await.map(drop));
    refused(repo.exists(Filter::all()).await.map(drop));
    refused(repo.insert(&Passage::new("q", 1.0)).await.map(drop));
    refused(repo.insert_many(&[Passage::new("q", 1.0)]).await.map(drop));
    refused(repo.update(&s.canaries[0]).await.map(drop));
    refused(repo.upsert(&s.canaries[0]).await.map(drop));
    refused(repo.delete(&id).await.map(drop));
    refused(repo.delete_where(Filter::all()).await.map(drop));
    refused(repo.restore(&id).await.map(drop));
    refused(repo.purge(&id).await.map(drop));
    refused(repo.with_deleted().count(Filter::all()).await.map(drop));
    let unit = fx.unscoped().begin().await.unwrap();
    refused(unit.repo::<Passage>().count(Filter::all()).await.map(drop));
    unit.rollback().await.unwrap();
    fx.tenant("acme")
        .repo::<Passage>()
        .insert(&Passage::new("ok", 1.0))
        .await
        .unwrap();
    s.assert_canaries_untouched().await;
}

/// One `#[tokio::test]` per body on `$fixture`.
macro_rules! tenancy_tests {
    ($fixture:ty; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                use $crate::tenancy::paths::TenantFixture as _;
                let fixture = <$fixture>::setup().await;
                $crate::tenancy::paths::$test(&fixture).await;
                fixture.teardown().await;
            }
        )+
    };
}
pub(crate) use tenancy_tests;
