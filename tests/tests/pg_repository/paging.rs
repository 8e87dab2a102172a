//! Keyset pagination, bulk inserts and concurrent writers.

use std::collections::HashSet;
use std::time::Instant;

use reposmith::Error;
use reposmith_core::{Filter, FindQuery, Order, Repository};
use reposmith_postgres::PgRepository;

use crate::entities::{Db, Doc, Event, Setting};

/// Every id of `order`, page by page of `size`; fails on a repeated id.
async fn walk(repo: &PgRepository<Event>, order: Vec<Order<Event>>, size: u64) -> Vec<i64> {
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let mut query = FindQuery::new(Filter::all());
        query.order = order.clone();
        query.after = cursor;
        let page = repo.fetch_page(query, size).await.unwrap();
        let (items, next) = (page.items, page.next);
        assert!(items.len() as u64 <= size);
        seen.extend(items.iter().map(|e| e.id));
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a row was repeated");
    seen
}

fn events(n: usize, tag: &str) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            id: 0,
            name: format!("{tag}-{i:05}"),
            // Few distinct scores so ties are common, and every fifth one NULL.
            score: (i % 5 != 0).then_some((i % 7) as i32),
        })
        .collect()
}

#[tokio::test]
async fn keyset_pages_neither_skip_nor_repeat_with_mixed_directions_and_nulls() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Event>();
    assert_eq!(repo.insert_many(&events(300, "e")).await.unwrap(), 300);
    let orders = [
        vec![],
        vec![Event::SCORE.asc()],
        vec![Event::SCORE.desc()],
        vec![Event::SCORE.desc(), Event::NAME.asc()],
        vec![Event::SCORE.asc(), Event::NAME.desc()],
        vec![Event::NAME.desc()],
    ];
    for order in orders {
        let mut full = FindQuery::new(Filter::all());
        full.order = order.clone();
        let expected: Vec<i64> = repo
            .fetch(full)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(expected.len(), 300);
        for size in [1, 7, 300, 301] {
            assert_eq!(
                walk(&repo, order.clone(), size).await,
                expected,
                "{order:?} by {size}"
            );
        }
    }
    db.cleanup().await;
}

#[tokio::test]
async fn paging_while_rows_are_inserted_keeps_every_original_row_once() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Event>();
    repo.insert_many(&events(400, "old")).await.unwrap();
    let original: HashSet<i64> = repo
        .fetch(FindQuery::new(Filter::all()))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let writer = {
        let repo = repo.clone();
        tokio::spawn(async move {
            for event in events(200, "new") {
                repo.insert(&event).await.unwrap();
            }
        })
    };
    let seen = walk(&repo, vec![Event::SCORE.desc(), Event::NAME.asc()], 9).await;
    writer.await.unwrap();
    let seen: HashSet<i64> = seen.into_iter().collect();
    assert!(original.is_subset(&seen), "an original row was skipped");
    db.cleanup().await;
}

#[tokio::test]
async fn insert_many_takes_100k_rows_and_is_all_or_nothing() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Event>();
    let rows = events(100_000, "bulk");
    let started = Instant::now();
    assert_eq!(repo.insert_many(&rows).await.unwrap(), 100_000);
    println!("insert_many: 100k rows in {:?}", started.elapsed());
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 100_000);

    // The last row of a 25k batch collides with a stored name: nothing of it stays.
    let mut more = events(25_000, "more");
    more[24_999].name = "bulk-00001".into();
    let err = repo.insert_many(&more).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                field: Some("name"),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 100_000);

    // Entities with array columns take the VALUES path, also all or nothing.
    let docs = db.pg.repo::<Doc>();
    let mut batch: Vec<Doc> = (0..2_500).map(|i| Doc::new(format!("d{i}"))).collect();
    assert_eq!(docs.insert_many(&batch).await.unwrap(), 2_500);
    batch.truncate(3);
    assert!(docs.insert_many(&batch).await.is_err());
    assert_eq!(docs.count(Filter::all()).await.unwrap(), 2_500);
    db.cleanup().await;
}

/// On a table whose only unique index is the id. (With a second unique index,
/// Postgres' ON CONFLICT arbitrates only the id: racing speculative inserts
/// can then fail on the other index, which surfaces as a typed `Conflict`.)
#[tokio::test]
async fn fifty_concurrent_upserts_of_one_key_leave_one_row() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Setting>();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let repo = repo.clone();
            let setting = Setting {
                key: "shared".into(),
                value: format!("v{i}"),
            };
            tokio::spawn(async move { repo.upsert(&setting).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 1);
    db.cleanup().await;
}

#[tokio::test]
async fn twenty_concurrent_updaters_have_one_winner_per_version() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Doc>();
    let doc = repo.insert(&Doc::new("contended")).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (repo, mut doc) = (repo.clone(), doc.clone());
            doc.rank = Some(i);
            tokio::spawn(async move { repo.update(&doc).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(updated) => {
                winners += 1;
                assert_eq!(updated.version, 2);
            }
            Err(Error::StaleVersion { expected: 1, .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(repo.count(Doc::VERSION.eq(2)).await.unwrap(), 1);
    db.cleanup().await;
}
