//! Cancellation at every await point: an operation of a unit, and the
//! unit's commit, are polled N times and then dropped, for N = 1, 2, ...
//! until they complete. After every drop the unit's transaction has ended
//! (a plain write to a document it wrote goes through at once) and the
//! unit's writes are all there or none are.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use reposmith::Error;
use reposmith_core::{Filter, Repository};
use reposmith_mongo::MongoRepository;
use reposmith_tests::conformance::entities::Doc;

use super::db::MongoDb;

/// Most polls tried before the operation must have completed.
const MOST_POLLS: usize = 500;

/// Polls `future` `n` times, each after a wake-up, and drops it then; its
/// output if it completed first.
async fn poll_n<F: Future>(mut future: Pin<&mut F>, n: usize) -> Option<F::Output> {
    let mut polls = 0;
    poll_fn(|cx| {
        if polls == n {
            return Poll::Ready(None);
        }
        polls += 1;
        future.as_mut().poll(cx).map(Some)
    })
    .await
}

/// A write to `doc` outside any unit: it waits while a transaction holds
/// the document, so finishing promptly shows no transaction is left open.
async fn write_outside(outside: &MongoRepository<Doc>, doc: &Doc) {
    let write = tokio::time::timeout(Duration::from_secs(10), outside.upsert(doc));
    write
        .await
        .expect("a transaction still holds the document")
        .unwrap();
}

/// Waits up to ten seconds for `title` to be stored.
async fn eventually_stored(outside: &MongoRepository<Doc>, title: &str) -> bool {
    for _ in 0..200 {
        if outside.exists(Doc::TITLE.eq(title)).await.unwrap() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn an_operation_of_a_unit_cancelled_at_any_poll_is_all_or_nothing() {
    let db = MongoDb::new().await;
    let outside = db.mongo.repo::<Doc>();
    let kept = outside.insert(&Doc::new("kept")).await.unwrap();
    for n in 1..=MOST_POLLS {
        let unit = db.mongo.begin().await.unwrap();
        let repo = unit.repo::<Doc>();
        let mut held = repo.get(&kept.id).await.unwrap().unwrap();
        held.rank = Some(n as i32);
        repo.update(&held).await.unwrap();
        let title = format!("insert cancelled after {n} polls");
        let inserted = poll_n(pin!(repo.insert(&Doc::new(&title))), n).await;
        let Some(inserted) = inserted else {
            let err = unit.commit().await.unwrap_err();
            assert!(
                matches!(&err, Error::Backend { reason, .. } if reason.contains("dropped")),
                "{err:?}"
            );
            write_outside(&outside, &kept).await;
            assert_eq!(outside.count(Doc::RANK.eq(n as i32)).await.unwrap(), 0);
            assert!(!outside.exists(Doc::TITLE.eq(title.as_str())).await.unwrap());
            continue;
        };
        inserted.unwrap();
        unit.commit().await.unwrap();
        assert!(outside.exists(Doc::TITLE.eq(title.as_str())).await.unwrap());
        assert_eq!(outside.count(Doc::RANK.eq(n as i32)).await.unwrap(), 1);
        db.cleanup().await;
        return;
    }
    panic!("the insert did not complete within {MOST_POLLS} polls");
}

#[tokio::test]
async fn a_commit_cancelled_at_any_poll_leaves_no_open_transaction() {
    let db = MongoDb::new().await;
    let outside = db.mongo.repo::<Doc>();
    let kept = outside.insert(&Doc::new("kept")).await.unwrap();
    for n in 1..=MOST_POLLS {
        let unit = db.mongo.begin().await.unwrap();
        let repo = unit.repo::<Doc>();
        let mut held = repo.get(&kept.id).await.unwrap().unwrap();
        held.rank = Some(n as i32);
        repo.update(&held).await.unwrap();
        let title = format!("committed, cancelled after {n} polls");
        repo.insert(&Doc::new(&title)).await.unwrap();
        drop(repo);
        let committed = poll_n(pin!(unit.commit()), n).await;
        // Cancelled or not, the commit goes through (resent in the
        // background when it was cancelled), and the document is free.
        assert!(
            eventually_stored(&outside, &title).await,
            "{title} never committed"
        );
        write_outside(&outside, &kept).await;
        if let Some(committed) = committed {
            committed.unwrap();
            assert_eq!(outside.count(Filter::all()).await.unwrap(), n as u64 + 1);
            db.cleanup().await;
            return;
        }
    }
    panic!("the commit did not complete within {MOST_POLLS} polls");
}
