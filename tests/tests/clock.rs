//! The repositories' clock (`PgConfig::clock`, `MongoConfig::clock`,
//! `Config::with_clock`): with a fixed clock every stamp a repository
//! writes equals it exactly, and after `advance` `updated_at` (and the
//! soft-delete stamp) moves while `created_at` does not, on every write
//! path: insert, both `insert_many` shapes, update, patch, `update_where`,
//! upsert, soft delete by id and by filter, restore, and the cutoff of
//! `purge_deleted`. The body is written once against `Repository`; `pg`
//! and `mongo` run it on their backend.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reposmith::Clock;
use reposmith::prelude::*;
use uuid::Uuid;

mod mongo;
mod pg;

/// Every timestamp a repository stamps: created, updated, soft-deleted.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "clock_rows")]
pub(crate) struct Stamped {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(unique)]
    pub(crate) slug: String,
    pub(crate) n: i64,
    #[repo(version)]
    pub(crate) version: i64,
    #[repo(created_at)]
    pub(crate) created_at: DateTime<Utc>,
    #[repo(updated_at)]
    pub(crate) updated_at: DateTime<Utc>,
    #[repo(soft_delete)]
    pub(crate) deleted_at: Option<DateTime<Utc>>,
}

impl Stamped {
    /// A row the repository gives an id, a version and its stamps.
    pub(crate) fn new(slug: &str) -> Stamped {
        Stamped {
            id: Uuid::nil(),
            slug: slug.to_owned(),
            n: 0,
            version: 0,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            deleted_at: None,
        }
    }
}

/// The fixed clock's start: a whole millisecond (MongoDB's precision), in
/// the future, so the system clock can never produce it.
pub(crate) fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 2, 3, 4, 5, 6).unwrap() + chrono::TimeDelta::milliseconds(789)
}

/// A minute.
const MINUTE: Duration = Duration::from_secs(60);

/// Moves `clock` on a minute and returns the new time.
fn tick(clock: &Clock) -> DateTime<Utc> {
    clock.advance(MINUTE).unwrap()
}

/// The row with `id`, deleted or not.
async fn stored<R: Repository<Stamped>>(repo: &R, id: &Uuid) -> Stamped {
    repo.with_deleted().get(id).await.unwrap().expect("the row")
}

/// The row with `slug`, deleted or not.
async fn by_slug<R: Repository<Stamped>>(repo: &R, slug: &str) -> Stamped {
    let found = repo
        .with_deleted()
        .find(Stamped::SLUG.eq(slug.to_owned()))
        .await
        .unwrap();
    found.into_iter().next().expect("the row")
}

/// Every write path of `repo`, whose backend stamps with `clock` (fixed at
/// [`start`]), stamps exactly the clock's time.
pub(crate) async fn every_path_stamps_the_clock<R: Repository<Stamped>>(repo: &R, clock: &Clock) {
    let t0 = start();
    assert_eq!(clock.now(), t0);
    let a = repo.insert(&Stamped::new("a")).await.unwrap();
    assert_eq!((a.created_at, a.updated_at), (t0, t0));
    assert_eq!(stored(repo, &a.id).await, a);

    // insert_many: a few rows (one statement) and 210 (COPY on PostgreSQL).
    let few: Vec<Stamped> = ["b", "c"].iter().map(|s| Stamped::new(s)).collect();
    assert_eq!(repo.insert_many(&few).await.unwrap(), 2);
    let many: Vec<Stamped> = (0..210).map(|i| Stamped::new(&format!("m{i}"))).collect();
    assert_eq!(repo.insert_many(&many).await.unwrap(), 210);
    let at_t0 = Stamped::CREATED_AT.eq(t0).and(Stamped::UPDATED_AT.eq(t0));
    assert_eq!(repo.count(at_t0).await.unwrap(), 213);

    let t1 = tick(clock);
    let updated = repo.update(&a).await.unwrap();
    assert_eq!((updated.created_at, updated.updated_at), (t0, t1));
    assert_eq!(stored(repo, &a.id).await.updated_at, t1);

    let t2 = tick(clock);
    let patched = repo.patch(&a.id, Stamped::N.set(5)).await.unwrap();
    assert_eq!((patched.created_at, patched.updated_at), (t0, t2));

    let t3 = tick(clock);
    let b = by_slug(repo, "b").await;
    let touched = repo
        .update_where(Stamped::SLUG.eq("b".to_owned()), Stamped::N.set(7))
        .await
        .unwrap();
    assert_eq!(touched, 1);
    let b = stored(repo, &b.id).await;
    assert_eq!((b.created_at, b.updated_at, b.n), (t0, t3, 7));

    let t4 = tick(clock);
    let c = by_slug(repo, "c").await;
    let upserted = repo.upsert(&c).await.unwrap();
    assert_eq!((upserted.created_at, upserted.updated_at), (t0, t4));
    let d = repo.upsert(&Stamped::new("d")).await.unwrap();
    assert_eq!((d.created_at, d.updated_at), (t4, t4));

    let t5 = tick(clock);
    assert!(repo.delete(&a.id).await.unwrap());
    let gone = stored(repo, &a.id).await;
    assert_eq!((gone.deleted_at, gone.updated_at), (Some(t5), t5));
    assert_eq!(gone.created_at, t0);

    let t6 = tick(clock);
    let deleted = repo.delete_where(Stamped::SLUG.eq("b".to_owned())).await;
    assert_eq!(deleted.unwrap(), 1);
    let b = stored(repo, &b.id).await;
    assert_eq!((b.deleted_at, b.updated_at), (Some(t6), t6));

    let t7 = tick(clock);
    assert!(repo.restore(&a.id).await.unwrap());
    let back = stored(repo, &a.id).await;
    assert_eq!(
        (back.deleted_at, back.updated_at, back.created_at),
        (None, t7, t0)
    );

    // b was deleted a minute before the clock's now: kept by a 90 s
    // cutoff, purged by a 30 s one.
    assert_eq!(
        repo.purge_deleted(Duration::from_secs(90)).await.unwrap(),
        0
    );
    assert_eq!(
        repo.purge_deleted(Duration::from_secs(30)).await.unwrap(),
        1
    );
    assert!(repo.with_deleted().get(&b.id).await.unwrap().is_none());
}

/// `Config::with_clock` reaches both database backends of a `Store`,
/// replacing their own settings' clock.
#[tokio::test]
async fn the_store_clock_reaches_every_backend() {
    let clock = Clock::fixed(start());
    let config = Config::new()
        .with_postgres(reposmith_tests::pg_config(reposmith_tests::database_url()))
        .with_mongo(reposmith::MongoConfig::new(reposmith_tests::mongodb_url()))
        .with_clock(clock.clone());
    let store = Store::connect(config).await.unwrap();
    let later = clock.advance(MINUTE).unwrap();
    assert_eq!(store.postgres().unwrap().clock().now(), later);
    assert_eq!(store.mongo().unwrap().clock().now(), later);
    store.close().await;
    // Without it, each backend keeps the clock of its own settings.
    let own = Clock::fixed(start());
    let pg = reposmith::PgConfig::new(reposmith_tests::database_url()).clock(own);
    let store = Store::connect(Config::new().with_postgres(pg))
        .await
        .unwrap();
    assert_eq!(store.postgres().unwrap().clock().now(), start());
    store.close().await;
}
