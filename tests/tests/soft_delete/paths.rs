//! The soft-delete bodies, written once against `Repository` and
//! `VectorSearch` and run on each backend by `soft_delete_tests!`.

use std::time::Duration;

use futures_util::TryStreamExt;
use reposmith::prelude::*;
use reposmith::{Error, Vector, VectorSearch};

use super::{Note, NoteRepository};

/// What a backend's soft-delete test needs: fresh storage and a repository.
pub(crate) trait SoftFixture: Sized {
    /// The repository of [`Note`]s.
    type Repo: Repository<Note> + VectorSearch<Note> + Clone;

    /// Fresh, empty storage with the table (or collection) and its indexes.
    async fn setup() -> Self;

    /// A repository on it.
    fn notes(&self) -> Self::Repo;

    /// Drops what `setup` made.
    async fn teardown(self);
}

/// Three notes at 1, 2 and 3 on the x axis; the middle one, `b`, deleted.
pub(crate) struct Seeded {
    pub(crate) a: Note,
    pub(crate) b: Note,
    pub(crate) c: Note,
}

pub(crate) async fn seed<R: Repository<Note>>(repo: &R) -> Seeded {
    let a = repo.insert(&Note::new("a", 1.0)).await.unwrap();
    let b = repo.insert(&Note::new("b", 2.0)).await.unwrap();
    let c = repo.insert(&Note::new("c", 3.0)).await.unwrap();
    assert!(repo.delete(&b.id).await.unwrap(), "b was live");
    Seeded { a, b, c }
}

fn slugs(notes: &[Note]) -> Vec<String> {
    let mut slugs: Vec<String> = notes.iter().map(|n| n.slug.clone()).collect();
    slugs.sort();
    slugs
}

fn live() -> Vec<String> {
    vec!["a".to_owned(), "c".to_owned()]
}

fn all() -> Vec<String> {
    vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]
}

pub(crate) async fn get<R: Repository<Note>>(repo: &R) {
    let s = seed(repo).await;
    assert_eq!(repo.get(&s.b.id).await.unwrap(), None);
    assert_eq!(
        repo.get(&s.a.id).await.unwrap().map(|n| n.slug),
        Some("a".into())
    );
    let gone = repo
        .with_deleted()
        .get(&s.b.id)
        .await
        .unwrap()
        .expect("with_deleted sees it");
    assert!(gone.deleted_at.is_some());
    assert_eq!(
        gone.version,
        s.b.version + 1,
        "the delete bumped the version"
    );
    assert!(
        gone.updated_at > s.b.updated_at,
        "the delete stamped updated_at"
    );
}

pub(crate) async fn get_many<R: Repository<Note>>(repo: &R) {
    let s = seed(repo).await;
    let ids = [s.a.id, s.b.id, s.c.id];
    assert_eq!(slugs(&repo.get_many(&ids).await.unwrap()), live());
    assert_eq!(
        slugs(&repo.with_deleted().get_many(&ids).await.unwrap()),
        all()
    );
}

pub(crate) async fn finder<R: Repository<Note>>(repo: &R) {
    seed(repo).await;
    assert_eq!(repo.find_by_slug("b").await.unwrap(), None);
    assert!(repo.find_by_slug("a").await.unwrap().is_some());
    assert!(
        repo.with_deleted()
            .find_by_slug("b")
            .await
            .unwrap()
            .is_some()
    );
    let topic = repo.find_all_by_topic("shared").await.unwrap();
    assert_eq!(slugs(&topic), live());
}

pub(crate) async fn find<R: Repository<Note>>(repo: &R) {
    seed(repo).await;
    let found = repo.find(Note::TOPIC.eq("shared")).await.unwrap();
    assert_eq!(slugs(&found), live());
    let found = repo
        .with_deleted()
        .find(Note::TOPIC.eq("shared"))
        .await
        .unwrap();
    assert_eq!(slugs(&found), all());
    // A caller's own filter on the column cannot widen the scope.
    let deleted = repo.find(Note::DELETED_AT.is_not_null()).await.unwrap();
    assert!(deleted.is_empty());
    let deleted = repo
        .with_deleted()
        .find(Note::DELETED_AT.is_not_null())
        .await
        .unwrap();
    assert_eq!(slugs(&deleted), ["b"]);
}

pub(crate) async fn count_and_exists<R: Repository<Note>>(repo: &R) {
    seed(repo).await;
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 2);
    assert_eq!(repo.with_deleted().count(Filter::all()).await.unwrap(), 3);
    assert!(!repo.exists(Note::SLUG.eq("b")).await.unwrap());
    assert!(
        repo.with_deleted()
            .exists(Note::SLUG.eq("b"))
            .await
            .unwrap()
    );
}

pub(crate) async fn stream<R: Repository<Note>>(repo: &R) {
    seed(repo).await;
    let query = || repo.find(Filter::all()).into_query();
    let streamed: Vec<Note> = repo.stream(query()).try_collect().await.unwrap();
    assert_eq!(slugs(&streamed), live());
    let view = repo.with_deleted();
    let streamed: Vec<Note> = view
        .stream(view.find(Filter::all()).into_query())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(slugs(&streamed), all());
}

pub(crate) async fn keyset_pages<R: Repository<Note>>(repo: &R) {
    seed(repo).await;
    let first = repo
        .find(Filter::all())
        .order_by(Note::SLUG.asc())
        .page_after(None, 1)
        .await
        .unwrap();
    let second = repo
        .find(Filter::all())
        .order_by(Note::SLUG.asc())
        .page_after(first.next.clone(), 1)
        .await
        .unwrap();
    assert_eq!(slugs(&first.items), ["a"]);
    assert_eq!(slugs(&second.items), ["c"], "b is skipped, not a gap");
    let view = repo.with_deleted();
    let page = view
        .find(Filter::all())
        .order_by(Note::SLUG.asc())
        .page_after(first.next, 1)
        .await
        .unwrap();
    assert_eq!(slugs(&page.items), ["b"]);
}

pub(crate) async fn vector_search<R: Repository<Note> + VectorSearch<Note>>(repo: &R) {
    seed(repo).await;
    // b (at 2.0) is the nearest row to the query.
    let query = || Vector::from(vec![2.0, 0.0, 0.0]);
    let hits = repo.search_embedding(query(), 2).await.unwrap();
    let found: Vec<Note> = hits.into_iter().map(|h| h.entity).collect();
    assert_eq!(slugs(&found), live());
    let hits = repo
        .with_deleted()
        .search_embedding(query(), 1)
        .await
        .unwrap();
    assert_eq!(hits[0].entity.slug, "b");
    let page = repo
        .search_embedding(query(), 1)
        .page_after(None)
        .await
        .unwrap();
    assert_ne!(page.items[0].entity.slug, "b");
}

pub(crate) async fn text_search<R: Repository<Note> + VectorSearch<Note>>(repo: &R) {
    seed(repo).await;
    let hits = repo.search_text("penguins", 10).await.unwrap();
    let found: Vec<Note> = hits.into_iter().map(|h| h.entity).collect();
    assert_eq!(slugs(&found), live());
    let hits = repo
        .with_deleted()
        .search_text("penguins", 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
}

pub(crate) async fn hybrid_search<R: Repository<Note> + VectorSearch<Note>>(repo: &R) {
    seed(repo).await;
    let query = || Vector::from(vec![2.0, 0.0, 0.0]);
    let hits = repo.search_hybrid("penguins", query(), 10).await.unwrap();
    let found: Vec<Note> = hits.into_iter().map(|h| h.entity).collect();
    assert_eq!(slugs(&found), live());
    let hits = repo
        .with_deleted()
        .search_hybrid("penguins", query(), 10)
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
}

/// Delete stamps once; a second delete, an update and `delete_where` of a
/// deleted row see nothing; `upsert` revives with the entity's value.
pub(crate) async fn writes<R: Repository<Note>>(repo: &R) {
    let s = seed(repo).await;
    assert!(!repo.delete(&s.b.id).await.unwrap(), "already deleted");
    let mut stale = s.b.clone();
    stale.body = "edited".into();
    stale.version += 1;
    assert!(matches!(
        repo.update(&stale).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        repo.delete_where(Filter::all()).await.unwrap(),
        2,
        "a and c; b was already deleted"
    );
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 0);
    assert_eq!(repo.delete_where(Filter::all()).await.unwrap(), 0);
    // An update never changes whether a row is deleted.
    let mut a = repo.with_deleted().get(&s.a.id).await.unwrap().unwrap();
    a.deleted_at = None;
    a.body = "still deleted".into();
    let a = repo.with_deleted().update(&a).await.unwrap();
    assert!(a.deleted_at.is_some(), "update kept the deletion");
    // upsert writes every field: the entity's None revives the row.
    let mut c = repo.with_deleted().get(&s.c.id).await.unwrap().unwrap();
    c.deleted_at = None;
    let c = repo.upsert(&c).await.unwrap();
    assert!(c.deleted_at.is_none());
    assert_eq!(
        repo.get(&s.c.id).await.unwrap().map(|n| n.slug),
        Some("c".into())
    );
}

pub(crate) async fn restore<R: Repository<Note>>(repo: &R) {
    let s = seed(repo).await;
    assert!(!repo.restore(&s.a.id).await.unwrap(), "a is not deleted");
    assert!(repo.restore(&s.b.id).await.unwrap());
    let b = repo.get(&s.b.id).await.unwrap().expect("restored");
    assert!(b.deleted_at.is_none());
    assert_eq!(
        b.version,
        s.b.version + 2,
        "delete and restore each bump it"
    );
    assert!(!repo.restore(&s.b.id).await.unwrap(), "already live");
    // Restoring a live key's twin would break the partial unique index.
    repo.delete(&s.a.id).await.unwrap();
    repo.insert(&Note::new("a", 9.0)).await.unwrap();
    assert!(matches!(
        repo.restore(&s.a.id).await,
        Err(Error::Conflict { .. })
    ));
}

pub(crate) async fn purge<R: Repository<Note>>(repo: &R) {
    let s = seed(repo).await;
    assert_eq!(
        repo.purge_deleted(Duration::from_secs(3600)).await.unwrap(),
        0,
        "b is recent"
    );
    assert_eq!(repo.purge_deleted(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(
        repo.with_deleted().get(&s.b.id).await.unwrap(),
        None,
        "gone for good"
    );
    assert!(
        repo.purge(&s.a.id).await.unwrap(),
        "purge removes a live row"
    );
    assert!(!repo.purge(&s.a.id).await.unwrap());
    assert_eq!(
        slugs(&repo.with_deleted().find(Filter::all()).await.unwrap()),
        ["c"]
    );
    let forever = Duration::from_secs(u64::MAX);
    assert!(matches!(
        repo.purge_deleted(forever).await,
        Err(Error::InvalidInput { .. })
    ));
}

/// A deleted row's unique key can be used again; two live rows still conflict.
pub(crate) async fn unique_key_reuse<R: Repository<Note>>(repo: &R) {
    let s = seed(repo).await;
    let again = repo.insert(&Note::new("b", 5.0)).await.unwrap();
    assert_ne!(again.id, s.b.id);
    assert_eq!(repo.find_by_slug("b").await.unwrap(), Some(again.clone()));
    assert!(matches!(
        repo.insert(&Note::new("b", 6.0)).await,
        Err(Error::Conflict { .. })
    ));
    repo.delete(&again.id).await.unwrap();
    repo.insert(&Note::new("b", 7.0)).await.unwrap();
    assert_eq!(
        repo.with_deleted().count(Note::SLUG.eq("b")).await.unwrap(),
        3
    );
}

/// A row read through the cache, then deleted, is not served from it;
/// a `with_deleted` read never fills the entry default reads use.
pub(crate) async fn cached_reads<R: Repository<Note>>(repo: &R) {
    let s = seed(repo).await;
    assert!(repo.get(&s.a.id).await.unwrap().is_some(), "a cached");
    assert_eq!(repo.get(&s.b.id).await.unwrap(), None, "b cached as absent");
    assert!(repo.with_deleted().get(&s.b.id).await.unwrap().is_some());
    assert_eq!(
        repo.get(&s.b.id).await.unwrap(),
        None,
        "the view filled nothing"
    );
    assert!(repo.delete(&s.a.id).await.unwrap());
    assert_eq!(
        repo.get(&s.a.id).await.unwrap(),
        None,
        "the delete invalidated a"
    );
    assert_eq!(repo.get_many(&[s.a.id, s.c.id]).await.unwrap().len(), 1);
    assert!(repo.restore(&s.b.id).await.unwrap());
    assert!(
        repo.get(&s.b.id).await.unwrap().is_some(),
        "the restore invalidated b"
    );
    let cached = repo
        .find(Filter::all())
        .cached(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(slugs(&cached), ["b", "c"]);
    repo.delete(&s.c.id).await.unwrap();
    let cached = repo
        .find(Filter::all())
        .cached(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(slugs(&cached), ["b"]);
}

/// One `#[tokio::test]` per path on `$fixture`; `search = [..]` lists the
/// search paths the backend runs.
macro_rules! soft_delete_tests {
    ($fixture:ty; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                use $crate::soft_delete::paths::SoftFixture as _;
                let fixture = <$fixture>::setup().await;
                $crate::soft_delete::paths::$test(&fixture.notes()).await;
                fixture.teardown().await;
            }
        )+
    };
}
pub(crate) use soft_delete_tests;
