//! Keyset pagination, with and without concurrent inserts, and bulk inserts.

use std::collections::HashSet;
use std::time::Instant;

use reposmith::{Error, Filter, FindQuery, Order, Repository};

use super::entities::Event;
use super::{Fixture, Sizes};

/// Every id of `order`, page by page of `size`; fails on a repeated id.
async fn walk<R: Repository<Event>>(repo: &R, order: Vec<Order<Event>>, size: u64) -> Vec<i64> {
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

/// `n` events named `tag-00000`…, with many tied and NULL scores.
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

/// Walking pages of any size in any order gives exactly the rows of one
/// unpaginated query, in the same order: pages of one row (a cursor on every
/// row), of 7 (ending inside groups of tied scores), of exactly every row,
/// and of one more.
pub async fn keyset_pages_neither_skip_nor_repeat_with_mixed_directions_and_nulls<F: Fixture>(
    fx: &F,
) {
    let n = fx.sizes().paged;
    assert!(n >= Sizes::MIN_PAGED, "{n} rows are too few to page");
    let repo = fx.events();
    assert_eq!(repo.insert_many(&events(n, "e")).await.unwrap(), n as u64);
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
        assert_eq!(expected.len(), n);
        for size in [1, 7, n as u64, n as u64 + 1] {
            assert_eq!(
                walk(&repo, order.clone(), size).await,
                expected,
                "{order:?} by {size}"
            );
        }
    }
}

/// Rows inserted while pages are read may or may not appear, but every row
/// present before the walk appears exactly once.
pub async fn paging_while_rows_are_inserted_keeps_every_original_row_once<F: Fixture>(fx: &F) {
    let repo = fx.events();
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
}

/// [`Sizes::bulk`] rows (100k unless the backend's fixture says otherwise)
/// in one call are all stored; a call of [`Sizes::bulk_failing`] rows whose
/// last row collides with a stored name leaves nothing.
pub async fn insert_many_takes_a_bulk_load_and_is_all_or_nothing<F: Fixture>(fx: &F) {
    let Sizes {
        bulk, bulk_failing, ..
    } = fx.sizes();
    assert!(bulk_failing <= bulk, "{bulk_failing} > {bulk}");
    let repo = fx.events();
    let rows = events(bulk, "bulk");
    let started = Instant::now();
    assert_eq!(repo.insert_many(&rows).await.unwrap(), bulk as u64);
    println!("insert_many: {bulk} rows in {:?}", started.elapsed());
    assert_eq!(repo.count(Filter::all()).await.unwrap(), bulk as u64);

    let mut more = events(bulk_failing, "more");
    more[bulk_failing - 1].name = "bulk-00001".into();
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
    assert_eq!(repo.count(Filter::all()).await.unwrap(), bulk as u64);
}
