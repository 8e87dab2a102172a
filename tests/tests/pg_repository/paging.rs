//! Bulk inserts on Postgres' second path: entities with array columns cannot
//! go through UNNEST and take multi-row VALUES. (Keyset pagination, the
//! UNNEST path and concurrent writers are in the conformance suite.)

use reposmith_core::{Cursor, Error, Filter, Repository};
use reposmith_tests::conformance::entities::Doc;

use super::db::Db;

#[tokio::test]
async fn insert_many_of_array_entities_takes_the_values_path_all_or_nothing() {
    let db = Db::new().await;
    // Entities with array columns take the VALUES path, also all or nothing.
    let docs = db.pg.repo::<Doc>();
    let mut batch: Vec<Doc> = (0..2_500).map(|i| Doc::new(format!("d{i}"))).collect();
    assert_eq!(docs.insert_many(&batch).await.unwrap(), 2_500);
    batch.truncate(3);
    assert!(docs.insert_many(&batch).await.is_err());
    assert_eq!(docs.count(Filter::all()).await.unwrap(), 2_500);
    db.cleanup().await;
}

/// A cursor comes from a client and is checked before anything is bound:
/// a text key holding NUL, or an instant before 4713 BC (a cursor can hold
/// chrono's whole range, PostgreSQL stops there), is invalid input naming
/// the cursor, not an encoding or range error from the server. Found with
/// the `cursor_decode` fuzz target's decoded values, which PostgreSQL
/// refused when bound.
#[tokio::test]
async fn a_tampered_cursor_is_invalid_input_before_the_database() {
    let db = Db::new().await;
    let docs = db.pg.repo::<Doc>();
    docs.insert(&Doc::new("first")).await.unwrap();
    let id = "00000000-0000-0000-0000-00000000002a";
    let tampered = [
        (Doc::TITLE.asc(), format!(r#"["a\u0000b","{id}"]"#)),
        (
            Doc::CREATED_AT.asc(),
            format!(r#"["-5000-01-01T00:00:00Z","{id}"]"#),
        ),
    ];
    let mut refused = 0;
    for (order, text) in tampered {
        let result = docs
            .find(Filter::all())
            .order_by(order)
            .page_after(Some(Cursor::parse(text.clone())), 10)
            .await;
        match result {
            Err(Error::InvalidInput { field, .. }) if field == "cursor" => refused += 1,
            other => panic!("{text}: {other:?}"),
        }
    }
    // The same page with an honest cursor still works: the checks refuse
    // the values, not the query.
    let page = docs
        .find(Filter::all())
        .order_by(Doc::TITLE.asc())
        .page_after(Some(Cursor::parse(format!(r#"["a","{id}"]"#))), 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    eprintln!("{refused} of 2 tampered cursors refused as invalid input before the database");
    db.cleanup().await;
}
