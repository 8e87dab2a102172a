//! `insert_many`'s two statement shapes (one multi-row INSERT below the COPY
//! threshold, binary COPY from there on): both all or nothing, both naming
//! the row a rejected value sits in, and the connection's `TCP_NODELAY`,
//! without which a small COPY waits for a delayed ACK.

use std::time::{Duration, Instant};

use reposmith::{BatchRow, Error};
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;

use super::db::Db;

/// Batch sizes on both sides of the COPY threshold (200 rows) and at it.
const SIZES: [usize; 6] = [1, 2, 100, 199, 200, 1_200];

#[tokio::test]
async fn every_batch_size_is_stored_whole() {
    let db = Db::new().await;
    let docs = db.pg.repo::<Doc>();
    let mut stored = 0;
    for size in SIZES {
        let batch: Vec<Doc> = (0..size)
            .map(|i| Doc::new(format!("s{size}-{i}")))
            .collect();
        assert_eq!(docs.insert_many(&batch).await.unwrap(), size as u64);
        stored += size as u64;
        let back = docs
            .find(Doc::TITLE.eq(format!("s{size}-{}", size - 1)))
            .await
            .unwrap();
        assert_eq!(back.len(), 1, "the last row of {size}");
        assert_ne!(back[0].id, uuid::Uuid::nil());
        assert_eq!(back[0].version, 1);
    }
    assert_eq!(docs.count(Filter::all()).await.unwrap(), stored);
    db.cleanup().await;
}

#[tokio::test]
async fn a_conflict_in_any_shape_stores_nothing_of_the_batch() {
    // A pool of one: each failed statement must leave the connection usable.
    let db = Db::with_pool(1).await;
    let docs = db.pg.repo::<Doc>();
    docs.insert(&Doc::new("taken")).await.unwrap();
    for size in [2, 100, 600] {
        let mut batch: Vec<Doc> = (0..size)
            .map(|i| Doc::new(format!("c{size}-{i}")))
            .collect();
        batch[size / 2].title = "taken".into();
        let err = docs.insert_many(&batch).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{size}: {err:?}");
        assert_eq!(docs.count(Filter::all()).await.unwrap(), 1, "{size}");
    }
    db.cleanup().await;
}

#[tokio::test]
async fn a_rejected_value_names_its_row_in_both_shapes() {
    let db = Db::with_pool(1).await;
    let docs = db.pg.repo::<Doc>();
    let cases = [
        (100, 57, "at index 57 of 100 rows"),
        (1_200, 1_157, "at index 1,157 of 1,200 rows"),
    ];
    for (size, bad, named) in cases {
        let mut batch: Vec<Doc> = (0..size)
            .map(|i| Doc::new(format!("r{size}-{i}")))
            .collect();
        batch[bad].summary = Some("nul\0here".into());
        let err = docs.insert_many(&batch).await.unwrap_err();
        match &err {
            Error::InvalidInput { field, row, .. } => {
                assert_eq!(field, "summary");
                assert_eq!(
                    *row,
                    Some(BatchRow {
                        index: bad,
                        of: size
                    })
                );
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(named), "{message}");
        // Nothing of the batch, and the one connection still serves queries.
        assert_eq!(docs.count(Filter::all()).await.unwrap(), 0);
    }
    db.cleanup().await;
}

/// Without `TCP_NODELAY` the last small message of a COPY waits for the
/// server's delayed ACK, about 40 ms on Linux (sqlx 0.9.0 dropped the option;
/// issue 4335). A one-row COPY on a connection from reposmith's pool takes
/// well under a millisecond here; the bound is 20 ms so that only Nagle, not
/// a busy machine, can cross it.
#[tokio::test]
async fn a_one_row_copy_does_not_wait_for_a_delayed_ack() {
    let db = Db::with_pool(1).await;
    let mut connection = db.pg.acquire().await.unwrap();
    reposmith::postgres::sqlx::raw_sql("CREATE TEMP TABLE nagle (n int4)")
        .execute(&mut *connection)
        .await
        .unwrap();
    let mut took = Vec::new();
    for n in 0..15 {
        let started = Instant::now();
        let mut copy = connection
            .copy_in_raw("COPY nagle (n) FROM STDIN")
            .await
            .unwrap();
        copy.send(format!("{n}\n").into_bytes()).await.unwrap();
        assert_eq!(copy.finish().await.unwrap(), 1);
        took.push(started.elapsed());
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "a one-row COPY took {median:?} (median of {}): is TCP_NODELAY off?",
        took.len()
    );
    drop(connection);
    db.cleanup().await;
}
