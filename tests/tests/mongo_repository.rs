//! The MongoDB repository against a real wire-protocol server (SecantusDB in
//! tests, MongoDB 7+ in production). The backend-neutral conformance suite
//! (`reposmith_tests::conformance`) runs here on a fresh database per test;
//! what only MongoDB has stays in this file: index names in conflicts and
//! operator-shaped values matched literally.

#[path = "mongo_repository/db.rs"]
pub(crate) mod db;

use db::MongoDb;
use reposmith::Error;
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use serde_json::json;

/// The whole conformance suite, each test on its own database, with the
/// smaller sizes of `MongoDb::sizes`. A failed large insert is undone with
/// `_id` equality deletes; the bulk test's earlier failures came from one
/// `$in` delete of 25k ids that kept the server busy for over 20 minutes
/// after the client gave up, slowing every other command.
mod conformance {
    reposmith_tests::conformance_tests!(super::db::MongoDb);
}

/// The conflict names the unique index created from the schema.
#[tokio::test]
async fn unique_violation_names_the_index() {
    let db = MongoDb::new().await;
    let repo = db.mongo.repo::<Doc>();
    repo.insert(&Doc::new("taken")).await.unwrap();
    let err = repo.insert(&Doc::new("taken")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { entity: "Doc", constraint, field: Some("title") }
            if constraint == "docs_title_key"),
        "{err:?}"
    );
    db.cleanup().await;
}

/// Values shaped like operators are matched literally, and JSON keys that
/// MongoDB would read as operators or paths are refused before sending.
#[tokio::test]
async fn operator_shaped_values_are_literals_and_operator_keys_are_refused() {
    let db = MongoDb::new().await;
    let repo = db.mongo.repo::<Doc>();
    let mut doc = Doc::new("{\"$ne\": \"\"}");
    doc.summary = Some("$where".into());
    repo.insert(&doc).await.unwrap();
    repo.insert(&Doc::new("plain")).await.unwrap();
    assert_eq!(
        repo.count(Doc::TITLE.eq("{\"$ne\": \"\"}")).await.unwrap(),
        1
    );
    assert_eq!(repo.count(Doc::SUMMARY.eq("$where")).await.unwrap(), 1);
    assert_eq!(repo.count(Doc::TITLE.like("{%")).await.unwrap(), 1);
    for bad in [json!({"$ne": ""}), json!({"a": {"b.c": 1}})] {
        let mut doc = Doc::new("bad");
        doc.meta = bad.clone();
        let err = repo.insert(&doc).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "meta"),
            "{err:?}"
        );
        let err = repo.count(Doc::META.contains(bad)).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "meta"),
            "{err:?}"
        );
    }
    let err = repo.count(Doc::META.path("$gt").eq(1)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 2);
    db.cleanup().await;
}

/// A small bulk insert runs in one transaction: a conflict in its last
/// document leaves none of the others.
#[tokio::test]
async fn insert_many_in_a_transaction_is_all_or_nothing() {
    let db = MongoDb::new().await;
    let repo = db.mongo.repo::<Doc>();
    repo.insert(&Doc::new("taken")).await.unwrap();
    let batch: Vec<Doc> = ["a", "b", "taken"].into_iter().map(Doc::new).collect();
    let err = repo.insert_many(&batch).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                field: Some("title"),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 1);
    assert_eq!(repo.insert_many(&batch[..2]).await.unwrap(), 2);
    db.cleanup().await;
}

/// A document of `insert_many` refused before sending is named by its index
/// in the batch, and nothing of the batch is stored.
#[tokio::test]
async fn a_refused_document_names_its_row_in_the_batch() {
    let db = MongoDb::new().await;
    let repo = db.mongo.repo::<Doc>();
    let mut batch: Vec<Doc> = (0..10).map(|i| Doc::new(format!("row {i}"))).collect();
    batch[7].meta = json!({"$where": "1"});
    let err = repo.insert_many(&batch).await.unwrap_err();
    match &err {
        Error::InvalidInput { field, row, .. } => {
            assert_eq!(field, "meta");
            assert_eq!(*row, Some(reposmith::BatchRow { index: 7, of: 10 }));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("at index 7 of 10 rows"), "{err}");
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 0);
    db.cleanup().await;
}
