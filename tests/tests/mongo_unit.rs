//! MongoDB units of work against a real wire-protocol server (SecantusDB in
//! tests, MongoDB 7+ in production): commit, rollback and drop, reads of a
//! unit's own writes, `transaction` with its retry on transient aborts,
//! poisoning by a dropped in-flight operation, the document size limit, and
//! unknown commit outcomes (`commit_outcome`) and cancellation at every
//! poll (`cancellation`).

#[path = "mongo_unit/cancellation.rs"]
mod cancellation;
#[path = "mongo_unit/commit_outcome.rs"]
mod commit_outcome;
use crate::mongo_repository::db;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use db::MongoDb;
use reposmith::Error;
use reposmith_core::{Filter, Repository, RetryPolicy};
use reposmith_tests::conformance::entities::Doc;

/// Polls `future` once and reports whether it is still pending.
async fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
    let mut future = future;
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_pending())).await
}

/// A document whose `summary` alone takes `bytes` bytes.
fn doc_of_size(title: &str, bytes: usize) -> Doc {
    let mut doc = Doc::new(title);
    doc.summary = Some("x".repeat(bytes));
    doc
}

#[tokio::test]
async fn commit_makes_writes_visible_only_then() {
    let db = MongoDb::new().await;
    let outside = db.mongo.repo::<Doc>();
    let unit = db.mongo.begin().await.unwrap();
    let a = unit.repo::<Doc>().insert(&Doc::new("a")).await.unwrap();
    unit.repo::<Doc>()
        .insert_many(&[Doc::new("b"), Doc::new("c")])
        .await
        .unwrap();
    assert!(
        outside.get(&a.id).await.unwrap().is_none(),
        "not before commit"
    );
    assert_eq!(outside.count(Filter::all()).await.unwrap(), 0);
    unit.commit().await.unwrap();
    assert_eq!(outside.get(&a.id).await.unwrap(), Some(a));
    assert_eq!(outside.count(Filter::all()).await.unwrap(), 3);
    db.cleanup().await;
}

#[tokio::test]
async fn a_unit_reads_its_own_writes() {
    let db = MongoDb::new().await;
    let unit = db.mongo.begin().await.unwrap();
    let repo = unit.repo::<Doc>();
    let a = repo.insert(&Doc::new("a")).await.unwrap();
    repo.insert(&Doc::new("b")).await.unwrap();
    assert_eq!(repo.get(&a.id).await.unwrap().as_ref(), Some(&a));
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 2);
    assert!(repo.exists(Doc::TITLE.eq("b")).await.unwrap());
    let mut changed = a.clone();
    changed.rank = Some(7);
    let changed = repo.update(&changed).await.unwrap();
    assert_eq!(changed.version, 2);
    let found = repo.find(Doc::RANK.eq(7)).await.unwrap();
    assert_eq!(found, vec![changed.clone()]);
    let stale = repo.update(&a).await.unwrap_err();
    assert!(matches!(stale, Error::StaleVersion { .. }), "{stale:?}");
    assert_eq!(repo.delete_where(Doc::TITLE.eq("b")).await.unwrap(), 1);
    let page = repo.find(Filter::all()).page_after(None, 10).await.unwrap();
    assert_eq!(page.items, vec![changed]);
    unit.commit().await.unwrap();
    assert_eq!(
        db.mongo.repo::<Doc>().count(Filter::all()).await.unwrap(),
        1
    );
    db.cleanup().await;
}

#[tokio::test]
async fn rollback_and_drop_discard_writes() {
    let db = MongoDb::new().await;
    let outside = db.mongo.repo::<Doc>();
    let kept = outside.insert(&Doc::new("kept")).await.unwrap();

    let unit = db.mongo.begin().await.unwrap();
    unit.repo::<Doc>()
        .insert(&Doc::new("rolled back"))
        .await
        .unwrap();
    unit.rollback().await.unwrap();

    let unit = db.mongo.begin().await.unwrap();
    let mut changed = kept.clone();
    changed.rank = Some(1);
    unit.repo::<Doc>().update(&changed).await.unwrap();
    unit.repo::<Doc>()
        .insert(&Doc::new("dropped"))
        .await
        .unwrap();
    drop(unit);

    assert_eq!(outside.count(Filter::all()).await.unwrap(), 1);
    assert_eq!(outside.get(&kept.id).await.unwrap().as_ref(), Some(&kept));
    // The dropped unit's transaction was aborted, not left holding the
    // document until the server's lifetime limit: a write to it goes through.
    let started = Instant::now();
    let updated = outside.update(&changed).await.unwrap();
    assert_eq!(updated.version, 2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    db.cleanup().await;
}

#[tokio::test]
async fn an_error_inside_transaction_is_returned_and_nothing_is_written() {
    let db = MongoDb::new().await;
    let runs = AtomicU32::new(0);
    let outcome: reposmith::Result<()> = db
        .mongo
        .transaction(RetryPolicy::default(), |uow| {
            runs.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                uow.repo::<Doc>().insert(&Doc::new("written")).await?;
                Err(Error::invalid("Doc", "title", "refused by the application"))
            })
        })
        .await;
    let err = outcome.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(
        runs.load(Ordering::Relaxed),
        1,
        "not transient: never rerun"
    );
    let repo = db.mongo.repo::<Doc>();
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 0);

    let value = db
        .mongo
        .transaction(RetryPolicy::default(), |uow| {
            Box::pin(async move {
                let doc = uow.repo::<Doc>().insert(&Doc::new("committed")).await?;
                Ok(doc.title)
            })
        })
        .await
        .unwrap();
    assert_eq!(value, "committed");
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 1);
    db.cleanup().await;
}

/// A failed command aborts a MongoDB transaction: the unit refuses later
/// commands and its commit, and nothing it wrote is kept.
#[tokio::test]
async fn a_failed_operation_poisons_the_unit() {
    let db = MongoDb::new().await;
    let outside = db.mongo.repo::<Doc>();
    outside.insert(&Doc::new("taken")).await.unwrap();
    let unit = db.mongo.begin().await.unwrap();
    let repo = unit.repo::<Doc>();
    repo.insert(&Doc::new("first")).await.unwrap();
    let conflict = repo.insert(&Doc::new("taken")).await.unwrap_err();
    assert!(
        matches!(
            conflict,
            Error::Conflict {
                field: Some("title"),
                ..
            }
        ),
        "{conflict:?}"
    );
    let refused = repo.count(Filter::all()).await.unwrap_err();
    assert!(matches!(refused, Error::Backend { .. }), "{refused:?}");
    let err = unit.commit().await.unwrap_err();
    assert!(err.to_string().contains("failed"), "{err}");
    assert_eq!(outside.count(Filter::all()).await.unwrap(), 1);
    db.cleanup().await;
}

/// The driver's rule: a transaction's operation future must not be dropped
/// mid-flight. One that is poisons the unit: later operations and commit
/// are refused, and the transaction is aborted.
#[tokio::test]
async fn dropping_an_in_flight_operation_poisons_the_unit() {
    let db = MongoDb::new().await;
    let unit = db.mongo.begin().await.unwrap();
    let repo = unit.repo::<Doc>();
    repo.insert(&Doc::new("before")).await.unwrap();
    {
        let doc = Doc::new("in flight");
        let mut insert = pin!(repo.insert(&doc));
        assert!(
            poll_once(insert.as_mut()).await,
            "completed on its first poll"
        );
    }
    let refused = repo.get(&uuid::Uuid::nil()).await.unwrap_err();
    assert!(refused.to_string().contains("dropped"), "{refused}");
    let err = unit.commit().await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend { reason, .. } if reason.contains("dropped")),
        "{err:?}"
    );
    let outside = db.mongo.repo::<Doc>();
    assert_eq!(outside.count(Filter::all()).await.unwrap(), 0);
    // The backend is fine afterwards.
    let unit = db.mongo.begin().await.unwrap();
    unit.repo::<Doc>().insert(&Doc::new("after")).await.unwrap();
    unit.commit().await.unwrap();
    assert_eq!(outside.count(Filter::all()).await.unwrap(), 1);
    db.cleanup().await;
}

/// A poisoned unit that is dropped instead of committed is aborted too.
#[tokio::test]
async fn dropping_a_poisoned_unit_aborts_it() {
    let db = MongoDb::new().await;
    let outside = db.mongo.repo::<Doc>();
    let kept = outside.insert(&Doc::new("kept")).await.unwrap();
    let unit = db.mongo.begin().await.unwrap();
    let repo = unit.repo::<Doc>();
    let mut changed = kept.clone();
    changed.rank = Some(1);
    repo.update(&changed).await.unwrap();
    {
        let mut get = pin!(repo.get(&kept.id));
        assert!(poll_once(get.as_mut()).await, "completed on its first poll");
    }
    drop(repo);
    drop(unit);
    let started = Instant::now();
    assert_eq!(outside.update(&changed).await.unwrap().version, 2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    db.cleanup().await;
}

#[tokio::test]
async fn an_oversized_document_is_too_large_and_nothing_is_written() {
    let db = MongoDb::new().await;
    let limit = db.mongo.capabilities().max_bson_object_size as usize;
    let big = doc_of_size("big", limit);
    let outside = db.mongo.repo::<Doc>();
    let assert_too_large = |err: Error| match &err {
        Error::TooLarge {
            what,
            size,
            limit: l,
        } => {
            assert!(what.contains("Doc") && what.contains("summary"), "{what}");
            assert!(*size > limit && *l == limit, "{err}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    };
    assert_too_large(outside.insert(&big).await.unwrap_err());
    assert_too_large(outside.upsert(&big).await.unwrap_err());
    let batch = [Doc::new("small"), doc_of_size("big", limit)];
    assert_too_large(outside.insert_many(&batch).await.unwrap_err());
    let small = outside.insert(&Doc::new("grows")).await.unwrap();
    let mut grown = small.clone();
    grown.summary = big.summary.clone();
    assert_too_large(outside.update(&grown).await.unwrap_err());

    // Refused before sending: the unit stays usable.
    let unit = db.mongo.begin().await.unwrap();
    assert_too_large(unit.repo::<Doc>().insert(&big).await.unwrap_err());
    unit.repo::<Doc>().insert(&Doc::new("fits")).await.unwrap();
    unit.commit().await.unwrap();

    assert_eq!(outside.count(Filter::all()).await.unwrap(), 2);
    assert_eq!(outside.get(&small.id).await.unwrap(), Some(small));
    // Just under the limit still goes through (the rest of the document
    // takes well under 1 KiB).
    let fits = doc_of_size("fits at the limit", limit - 1024);
    outside.insert(&fits).await.unwrap();
    db.cleanup().await;
}

/// Two transactions write one document: the second meets the first's
/// uncommitted write (a write conflict, `TransientTransactionError`), and
/// `transaction` runs it again once the first has committed.
#[tokio::test]
async fn a_write_conflict_between_two_transactions_is_retried() {
    let db = MongoDb::new().await;
    let outside = db.mongo.repo::<Doc>();
    let original = outside.insert(&Doc::new("contended")).await.unwrap();

    let first = db.mongo.begin().await.unwrap();
    let mut by_first = original.clone();
    by_first.rank = Some(1);
    first.repo::<Doc>().update(&by_first).await.unwrap();

    let (conflicted_tx, conflicted) = tokio::sync::watch::channel(None::<String>);
    let (committed_tx, committed) = tokio::sync::watch::channel(false);
    let runs = Arc::new(AtomicU32::new(0));
    let mongo = db.mongo.clone();
    let second = tokio::spawn({
        let runs = Arc::clone(&runs);
        let id = original.id;
        async move {
            let policy = RetryPolicy::default().max_attempts(3);
            mongo
                .transaction(policy, |uow| {
                    let run = runs.fetch_add(1, Ordering::Relaxed) + 1;
                    let conflicted_tx = conflicted_tx.clone();
                    let mut committed = committed.clone();
                    Box::pin(async move {
                        if run > 1 {
                            committed.wait_for(|done| *done).await.unwrap();
                        }
                        let repo = uow.repo::<Doc>();
                        let mut doc = repo.get(&id).await?.expect("the document exists");
                        doc.tags.push(format!("run {run}"));
                        let written = repo.update(&doc).await;
                        if let Err(error) = &written {
                            // The server aborted the transaction: the unit
                            // refuses more work, still as retryable.
                            let refused = repo.count(Filter::all()).await.unwrap_err();
                            assert!(refused.is_retryable(), "{refused:?}");
                            conflicted_tx.send_replace(Some(format!("{error:?}")));
                        }
                        written
                    })
                })
                .await
        }
    });

    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        let mut conflicted = conflicted;
        conflicted.wait_for(Option::is_some).await.unwrap().clone()
    })
    .await
    .expect("the second transaction met the first's write");
    let seen = seen.unwrap();
    assert!(seen.contains("Retryable"), "{seen}");
    first.commit().await.unwrap();
    committed_tx.send_replace(true);

    let written = second.await.unwrap().unwrap();
    assert_eq!(runs.load(Ordering::Relaxed), 2);
    assert_eq!((written.rank, written.version), (Some(1), 3));
    assert_eq!(written.tags, vec!["run 2".to_owned()]);
    assert_eq!(outside.get(&original.id).await.unwrap(), Some(written));
    db.cleanup().await;
}
