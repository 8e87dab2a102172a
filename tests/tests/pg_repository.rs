//! The PostgreSQL repository against a real server. The backend-neutral
//! conformance suite (`reposmith_tests::conformance`) runs here on a fresh
//! schema per test; what only Postgres has stays in this file: constraint
//! names, NUL rejection, insert_many's VALUES path (`paging`), and units of
//! work, savepoints and retries (`unit`).

#[path = "pg_repository/batches.rs"]
mod batches;
#[path = "pg_repository/db.rs"]
pub(crate) mod db;
#[path = "pg_repository/paging.rs"]
mod paging;
#[path = "pg_repository/unit.rs"]
mod unit;

use db::Db;
use reposmith::Error;
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use serde_json::json;

/// Every conformance test, each on its own schema.
mod conformance {
    reposmith_tests::conformance_tests!(super::db::Db);
}

/// The conflict names the Postgres constraint the derive's DDL created.
#[tokio::test]
async fn unique_violation_names_the_postgres_constraint() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Doc>();
    repo.insert(&Doc::new("taken")).await.unwrap();
    let err = repo.insert(&Doc::new("taken")).await.unwrap_err();
    match &err {
        Error::Conflict {
            entity,
            constraint,
            field,
        } => {
            assert_eq!(
                (*entity, constraint.as_str(), field.to_owned()),
                ("Doc", "docs_title_key", Some("title"))
            );
        }
        other => panic!("{other:?}"),
    }
    db.cleanup().await;
}

#[tokio::test]
async fn nul_in_text_or_json_is_invalid_input_and_nothing_is_written() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Doc>();
    let mut bad_text = Doc::new("nul\0here");
    let err = repo.insert(&bad_text).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "title"),
        "{err:?}"
    );
    bad_text.title = "ok".into();
    bad_text.meta = json!({"deep": [{"x\u{0000}": 1}]});
    let err = repo.insert(&bad_text).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "meta"),
        "{err:?}"
    );
    let err = repo
        .insert_many(&[Doc::new("fine"), bad_text])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let err = repo.count(Doc::TITLE.eq("a\0")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 0);
    db.cleanup().await;
}

/// `upsert_on` a unique column: the second write with the same title
/// overwrites the first row's fields, keeps its id and creation time, and
/// bumps its version; a non-unique column is refused before anything is sent.
#[tokio::test]
async fn upsert_on_a_unique_column_overwrites_the_row_that_has_the_key() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Doc>();
    let mut first = Doc::new("handbook");
    first.summary = Some("draft".into());
    let stored = repo.upsert_on(&first, Doc::TITLE).await.unwrap();
    assert_eq!(stored.version, 1);

    let mut second = Doc::new("handbook");
    second.summary = Some("final".into());
    let merged = repo.upsert_on(&second, Doc::TITLE).await.unwrap();
    assert_eq!(merged.id, stored.id, "the existing row keeps its id");
    assert_eq!(merged.created_at, stored.created_at);
    assert_eq!(merged.summary.as_deref(), Some("final"));
    assert_eq!(merged.version, 2);
    assert_eq!(repo.count(Doc::TITLE.eq("handbook")).await.unwrap(), 1);

    let err = repo.upsert_on(&second, Doc::SUMMARY).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "summary"),
        "{err:?}"
    );
    db.cleanup().await;
}

/// A NUL deep inside a bulk insert is found while streaming: the COPY is
/// aborted, the error names the field, and none of the rows already sent stay.
#[tokio::test]
async fn insert_many_with_a_bad_row_late_in_the_stream_writes_nothing() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Doc>();
    let mut docs: Vec<Doc> = (0..30_000).map(|i| Doc::new(format!("bulk {i}"))).collect();
    docs[25_000].summary = Some("nul \u{0} here".into());
    let err = repo.insert_many(&docs).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "summary"),
        "{err:?}"
    );
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 0);
    docs[25_000].summary = None;
    assert_eq!(repo.insert_many(&docs).await.unwrap(), 30_000);
    db.cleanup().await;
}

/// A row locked by another unit makes an update wait; the server's
/// statement_timeout ends the wait with a typed timeout, not a hang, and the
/// pool keeps working.
#[tokio::test]
async fn a_statement_blocked_on_a_lock_ends_in_a_typed_timeout() {
    let db = Db::new().await;
    let url = {
        let base = reposmith_tests::database_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!(
            "{base}{sep}options=-c%20search_path%3D{}",
            db.application_name()
        )
    };
    let impatient = reposmith::PgBackend::connect(
        &reposmith_tests::pg_config(url)
            .statement_timeout(Some(std::time::Duration::from_millis(300))),
    )
    .await
    .unwrap();
    let doc = db
        .pg
        .repo::<Doc>()
        .insert(&Doc::new("locked"))
        .await
        .unwrap();
    let holder = db.pg.begin().await.unwrap();
    holder.repo::<Doc>().update(&doc).await.unwrap();

    let started = std::time::Instant::now();
    let err = impatient.repo::<Doc>().update(&doc).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    holder.rollback().await.unwrap();
    assert_eq!(
        impatient.repo::<Doc>().count(Filter::all()).await.unwrap(),
        1
    );
    impatient.close().await;
    db.cleanup().await;
}
