//! The backend-neutral seams, run by one generic function on both backends:
//! a unit of work through `DataStore` and `UnitOfWork` commits, rolls back,
//! is dropped, retries a retryable failure, and nests where the backend has
//! savepoints (and refuses with `Unavailable` where it has none).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use reposmith::{Backend, DataStore, Error, Filter, Repository, RetryPolicy, StoredIn, UnitOfWork};
use reposmith_tests::conformance::entities::Doc;

use crate::mongo_repository::db::MongoDb;
use crate::pg_repository::db::Db;

async fn count<D: DataStore>(db: &D) -> u64
where
    Doc: StoredIn<D::Home>,
{
    db.repo::<Doc>().count(Filter::all()).await.unwrap()
}

/// Everything below is written once, against the core traits only.
async fn units_behave_alike<D: DataStore>(db: &D)
where
    Doc: StoredIn<D::Home>,
{
    let unit = db.begin().await.unwrap();
    unit.repo::<Doc>()
        .insert(&Doc::new("rolled back"))
        .await
        .unwrap();
    unit.rollback().await.unwrap();
    assert_eq!(
        count(db).await,
        0,
        "{:?}: rollback keeps nothing",
        db.backend()
    );

    let unit = db.begin().await.unwrap();
    unit.repo::<Doc>()
        .insert(&Doc::new("dropped"))
        .await
        .unwrap();
    drop(unit);
    assert_eq!(
        count(db).await,
        0,
        "{:?}: a dropped unit keeps nothing",
        db.backend()
    );

    let unit = db.begin().await.unwrap();
    unit.repo::<Doc>()
        .insert(&Doc::new("committed"))
        .await
        .unwrap();
    unit.commit().await.unwrap();
    assert_eq!(count(db).await, 1);

    // A retryable failure on the first attempt: the work runs again in a
    // new unit, and the first attempt's insert is not kept.
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let backend = db.backend();
    let stored = db
        .transaction(RetryPolicy::default(), move |unit| {
            let attempt = seen.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                let doc = unit.repo::<Doc>().insert(&Doc::new("retried")).await?;
                if attempt == 1 {
                    return Err(Error::Retryable {
                        backend,
                        code: "test".to_owned(),
                        reason: "first attempt aborted by the test".to_owned(),
                    });
                }
                Ok(doc.title)
            })
        })
        .await
        .unwrap();
    assert_eq!(
        (stored.as_str(), attempts.load(Ordering::SeqCst)),
        ("retried", 2)
    );
    assert_eq!(count(db).await, 2, "one retried row, not two");

    // Once is once: a retryable failure under `RetryPolicy::once()` is returned.
    let failed = db
        .transaction(RetryPolicy::once(), move |_unit| {
            Box::pin(async move {
                Err::<(), _>(Error::Retryable {
                    backend,
                    code: "test".to_owned(),
                    reason: "always".to_owned(),
                })
            })
        })
        .await;
    assert!(failed.unwrap_err().is_retryable());

    let unit = db.begin().await.unwrap();
    match (db.capabilities().nested_units, unit.nested().await) {
        (true, Ok(nested)) => {
            nested
                .repo::<Doc>()
                .insert(&Doc::new("nested"))
                .await
                .unwrap();
            nested.rollback().await.unwrap();
            unit.repo::<Doc>().insert(&Doc::new("outer")).await.unwrap();
            unit.commit().await.unwrap();
            assert_eq!(
                count(db).await,
                3,
                "the nested rollback kept the outer write"
            );
        }
        (false, Err(Error::Unavailable { .. })) => unit.rollback().await.unwrap(),
        (flag, other) => panic!("{backend:?}: nested_units {flag} but nested() gave {other:?}"),
    }
}

#[tokio::test]
async fn a_generic_unit_of_work_behaves_alike_on_postgres() {
    let db = Db::new().await;
    assert_eq!(db.pg.backend(), Backend::Postgres);
    let caps = DataStore::capabilities(&db.pg);
    assert!(caps.transactions && caps.nested_units && caps.isolation_levels);
    units_behave_alike(&db.pg).await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_generic_unit_of_work_behaves_alike_on_mongo() {
    let db = MongoDb::new().await;
    assert_eq!(db.mongo.backend(), Backend::Mongo);
    let caps = DataStore::capabilities(&db.mongo);
    assert!(caps.transactions && !caps.nested_units && !caps.isolation_levels);
    units_behave_alike(&db.mongo).await;
    db.cleanup().await;
}
