//! Limits the servers would otherwise report as untyped or misleading
//! errors, or that would crash the process, refused before anything is
//! sent: a filter beyond the condition cap, a PostgreSQL statement binding
//! more than 65,535 parameters (`InvalidInput` naming the entity and the
//! count, where the protocol would fail as if the connection broke), and a
//! MongoDB update document over the 16 MiB document limit (`TooLarge`
//! naming the field, as an insert is refused).

use reposmith::{Error, Filter, Repository};
use reposmith_tests::conformance::entities::Doc;

use crate::mongo_repository::db::MongoDb;
use crate::pg_repository::db::Db;

/// A filter of 70,000 `or`ed conditions is refused before it is rendered,
/// on an ordinary test thread: rendering recurses once per condition, and
/// a filter that wide overflowed the thread's stack and aborted the whole
/// process. One at the cap still runs, on both backends; the same values
/// as one `is_in` (one bound array) run too. Counted by `count`, `find`
/// and `delete_where` alike, and nothing is deleted.
#[tokio::test]
async fn a_filter_beyond_the_condition_cap_is_invalid_input_not_a_crash() {
    let (pg, mongo) = (Db::with_connections(1).await, MongoDb::new().await);
    beyond_the_condition_cap(&pg.pg.repo::<Doc>()).await;
    beyond_the_condition_cap(&mongo.mongo.repo::<Doc>()).await;
    pg.cleanup().await;
    mongo.cleanup().await;
}

async fn beyond_the_condition_cap(repo: &impl Repository<Doc>) {
    let titles: Vec<String> = (0..70_000).map(|i| format!("t{i}")).collect();
    let wide = |n: usize| {
        titles[..n].iter().fold(Doc::TITLE.eq("kept"), |f, t| {
            f.or(Doc::TITLE.eq(t.as_str()))
        })
    };
    let refused = |outcome: reposmith::Result<String>| match outcome {
        Err(Error::InvalidInput { entity, reason, .. }) => {
            assert_eq!(entity, "Doc");
            assert!(reason.contains("at most 1024 conditions"), "{reason}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    let at_cap = reposmith::MAX_FILTER_NODES - 2; // the Or node and "kept"
    repo.insert(&Doc::new("kept")).await.unwrap();
    refused(repo.count(wide(70_000)).await.map(|n| n.to_string()));
    refused(repo.find(wide(70_000)).await.map(|d| format!("{d:?}")));
    refused(repo.delete_where(wide(70_000)).await.map(|n| n.to_string()));
    refused(repo.count(wide(at_cap + 1)).await.map(|n| n.to_string()));
    assert_eq!(repo.count(wide(at_cap)).await.unwrap(), 1);
    let listed = Doc::TITLE.is_in(titles.iter().map(String::as_str).chain(["kept"]));
    assert_eq!(repo.count(listed).await.unwrap(), 1);
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        1,
        "nothing deleted"
    );
}

/// A statement binding more than 65,535 parameters is refused, naming the
/// entity and the count, where the protocol would fail as if the
/// connection broke: an `is_in` over an array column binds each listed
/// array on its own (an array of arrays would flatten). The pool's
/// connection is still usable afterwards.
#[tokio::test]
async fn a_statement_over_postgres_parameter_limit_is_invalid_input() {
    let db = Db::with_connections(1).await;
    let repo = db.pg.repo::<Doc>();
    repo.insert(&Doc::new("kept")).await.unwrap();
    let lists = || (0..70_000).map(|i| vec![format!("t{i}")]);
    match repo.count(Doc::TAGS.is_in(lists())).await {
        Err(Error::InvalidInput { entity, reason, .. }) => {
            assert_eq!(entity, "Doc");
            assert!(reason.contains("bind 70000 values"), "{reason}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 1);
    db.cleanup().await;
}

/// A patch or `update_where` whose update document exceeds MongoDB's
/// 16 MiB limit is `TooLarge` naming the field, and nothing is written.
#[tokio::test]
async fn a_mongo_update_over_the_document_limit_is_too_large() {
    let db = MongoDb::new().await;
    let repo = db.mongo.repo::<Doc>();
    let doc = repo.insert(&Doc::new("small")).await.unwrap();
    let huge = "x".repeat(17 << 20);
    let too_large = |outcome: reposmith::Result<String>| match outcome {
        Err(Error::TooLarge { what, size, limit }) => {
            assert_eq!(limit, 16 << 20);
            assert!(size > 17 << 20, "{size}");
            assert!(what.contains("`summary`"), "{what}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    };
    let set = || Doc::SUMMARY.set(huge.as_str());
    too_large(repo.patch(&doc.id, set()).await.map(|d| d.title));
    let everything = repo.update_where(Filter::all(), set());
    too_large(everything.await.map(|n| n.to_string()));
    let returning = repo.update_where(Filter::all(), set()).returning();
    too_large(returning.await.map(|d| format!("{}", d.len())));
    assert_eq!(
        repo.get(&doc.id).await.unwrap().unwrap(),
        doc,
        "nothing written"
    );
    db.cleanup().await;
}
