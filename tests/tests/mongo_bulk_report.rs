//! `MongoRepository::insert_many_unordered` against a real wire-protocol
//! server (SecantusDB in tests, MongoDB 7+ in production): every document
//! that can be stored is, and each other one is reported at its position
//! with a typed error — duplicates against stored documents and within the
//! call, an oversized document, a bad vector — across more than one batch;
//! identity ids only for the documents sent; a command whose reply is lost
//! stops the call with `CommitOutcomeUnknown`; a unit of work refuses it.

use std::collections::BTreeSet;

use reposmith::{Error, Filter, InsertReport, MongoBackend, MongoConfig, Repository, Vector};
use reposmith_tests::conformance::entities::Event;
use reposmith_tests::fault_proxy::{FaultProxy, Matcher, Mode, ReplyLoss, Wire};
use reposmith_tests::{mongodb_url, unique_name, with_host};

/// A chat-log or trace line: an id the application assigns, a unique
/// span key, a body and a small embedding.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "bulk_traces")]
struct Trace {
    #[repo(id)]
    id: String,
    #[repo(unique)]
    span: String,
    body: String,
    #[repo(vector(dims = 3, distance = "cosine", index = "none"))]
    embedding: Vector,
}

/// The `i`-th trace: id `t-0000i`, span `s-0000i`.
fn trace(i: usize) -> Trace {
    Trace {
        id: format!("t-{i:05}"),
        span: format!("s-{i:05}"),
        body: format!("line {i}"),
        embedding: Vector::from(vec![1.0, i as f32, 0.5]),
    }
}

fn traces(n: usize) -> Vec<Trace> {
    (0..n).map(trace).collect()
}

/// A database of its own with the traces' and events' collections.
struct Db {
    mongo: MongoBackend,
}

impl Db {
    async fn new() -> Db {
        let config = MongoConfig::new(mongodb_url()).database(unique_name("mongobulk"));
        let mongo = MongoBackend::connect(&config).await.unwrap();
        mongo.create_collections::<Trace>().await.unwrap();
        mongo.create_collections::<Event>().await.unwrap();
        Db { mongo }
    }

    /// Drops the database and closes the client.
    async fn cleanup(self) {
        self.mongo.database().drop().await.unwrap();
        self.mongo.close().await;
    }
}

/// The ids stored in the traces' collection.
async fn stored_ids(db: &Db) -> BTreeSet<String> {
    let all = db.mongo.repo::<Trace>().find(Filter::all()).await.unwrap();
    all.into_iter().map(|t| t.id).collect()
}

/// Asserts `report`'s failure at position `i` is a conflict on `field`
/// through `constraint`.
fn assert_conflict(report: &InsertReport, i: usize, field: &str, constraint: &str) {
    let failure = report.failures.iter().find(|f| f.index == i);
    let failure = failure.unwrap_or_else(|| panic!("no failure at {i}: {report:?}"));
    assert!(
        matches!(&failure.error, Error::Conflict { entity: "Trace", constraint: c, field: Some(f) }
            if c == constraint && *f == field),
        "at {i}: {:?}",
        failure.error
    );
}

#[tokio::test]
async fn all_good_documents_are_stored_and_the_report_is_complete() {
    let db = Db::new().await;
    let repo = db.mongo.repo::<Trace>();
    let input = traces(40);
    let report = repo.insert_many_unordered(&input).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.inserted, 40);
    assert!(report.failed_indexes().is_empty());
    for expected in &input {
        let stored = repo.get(&expected.id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(expected));
    }
    db.cleanup().await;
}

/// 2,500 documents (three batches); two collide with stored `_id`s and one
/// with a stored unique span, in the first and later batches: exactly those
/// three are reported, each a conflict naming its index and field, and the
/// other 2,497 are stored.
#[tokio::test]
async fn duplicates_of_stored_documents_are_reported_and_the_rest_stored() {
    let db = Db::new().await;
    let repo = db.mongo.repo::<Trace>();
    let mut taken_span = trace(2_200);
    taken_span.id = "older".into();
    let stored_before = [trace(100), trace(1_500), taken_span];
    for t in &stored_before {
        repo.insert(t).await.unwrap();
    }
    let mut input = traces(2_500);
    for i in [100, 1_500] {
        // Same id as the stored one; a fresh span, so only `_id` collides.
        input[i].span = format!("fresh-{i}");
    }
    let report = repo.insert_many_unordered(&input).await.unwrap();
    assert_eq!(
        report.failed_indexes(),
        vec![100, 1_500, 2_200],
        "{report:?}"
    );
    assert_eq!(report.inserted, 2_497);
    assert_conflict(&report, 100, "id", "_id_");
    assert_conflict(&report, 1_500, "id", "_id_");
    assert_conflict(&report, 2_200, "span", "bulk_traces_span_key");
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 2_500);
    // The stored documents kept their own values, not the refused ones'.
    let kept = repo.get(&"t-00100".to_owned()).await.unwrap().unwrap();
    assert_eq!(kept.span, "s-00100");
    assert!(repo.get(&"t-02200".to_owned()).await.unwrap().is_none());
    let ids = stored_ids(&db).await;
    for (i, t) in input.iter().enumerate() {
        if ![100, 1_500, 2_200].contains(&i) {
            assert!(ids.contains(&t.id), "{} missing", t.id);
        }
    }
    db.cleanup().await;
}

/// Duplicates within the call: the first one the server sees wins, also
/// when the second is in a later batch.
#[tokio::test]
async fn duplicates_within_the_call_are_reported_after_the_first() {
    let db = Db::new().await;
    let repo = db.mongo.repo::<Trace>();
    let mut input = traces(1_100);
    input[5].span = input[4].span.clone();
    input[1_050].id = input[3].id.clone();
    let report = repo.insert_many_unordered(&input).await.unwrap();
    assert_eq!(report.failed_indexes(), vec![5, 1_050], "{report:?}");
    assert_eq!(report.inserted, 1_098);
    assert_conflict(&report, 5, "span", "bulk_traces_span_key");
    assert_conflict(&report, 1_050, "id", "_id_");
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 1_098);
    let first = repo.get(&input[3].id).await.unwrap().unwrap();
    assert_eq!(first.span, input[3].span);
    db.cleanup().await;
}

/// An oversized document and a NaN vector fail the checks before sending:
/// reported with their typed errors, not stored; the others are.
#[tokio::test]
async fn invalid_documents_are_reported_and_not_sent() {
    let db = Db::new().await;
    let repo = db.mongo.repo::<Trace>();
    let limit = db.mongo.capabilities().max_bson_object_size as usize;
    let mut input = traces(20);
    input[4].body = "x".repeat(limit);
    input[9].embedding = Vector::from(vec![f32::NAN, 1.0, 0.0]);
    let report = repo.insert_many_unordered(&input).await.unwrap();
    assert_eq!(report.failed_indexes(), vec![4, 9], "{report:?}");
    assert_eq!(report.inserted, 18);
    assert!(
        matches!(&report.failures[0].error, Error::TooLarge { size, limit: l, .. }
            if *size > limit && *l == limit),
        "{:?}",
        report.failures[0].error
    );
    assert!(
        matches!(&report.failures[1].error, Error::InvalidInput { entity: "Trace", field, .. }
            if field == "embedding"),
        "{:?}",
        report.failures[1].error
    );
    let ids = stored_ids(&db).await;
    assert_eq!(ids.len(), 18);
    assert!(!ids.contains(&input[4].id) && !ids.contains(&input[9].id));
    db.cleanup().await;
}

/// Identity ids come from one block for the documents sent: a document
/// refused before sending takes none, one the server refuses took its id
/// (it was sent), and the next insert continues after the block.
#[tokio::test]
async fn identity_ids_are_allocated_only_for_documents_sent() {
    let db = Db::new().await;
    let repo = db.mongo.repo::<Event>();
    let event = |name: &str| Event {
        id: 0,
        name: name.to_owned(),
        score: None,
    };
    let first = repo.insert(&event("first")).await.unwrap().id;
    let limit = db.mongo.capabilities().max_bson_object_size as usize;
    let input = [
        event("a"),
        event("b"),
        event(&"x".repeat(limit)),
        event("a"),
        event("e"),
    ];
    let report = repo.insert_many_unordered(&input).await.unwrap();
    assert_eq!(report.failed_indexes(), vec![2, 3], "{report:?}");
    assert!(matches!(report.failures[0].error, Error::TooLarge { .. }));
    assert!(matches!(
        report.failures[1].error,
        Error::Conflict {
            field: Some("name"),
            ..
        }
    ));
    let id_of = async |name: &str| repo.find(Event::NAME.eq(name)).await.unwrap()[0].id;
    assert_eq!(id_of("a").await, first + 1);
    assert_eq!(id_of("b").await, first + 2);
    // Position 3 (the duplicate "a") was sent with first + 3.
    assert_eq!(id_of("e").await, first + 4);
    // Nothing valid: nothing reserved. An empty call likewise.
    let report = repo
        .insert_many_unordered(&[event(&"x".repeat(limit))])
        .await
        .unwrap();
    assert_eq!((report.inserted, report.failed_indexes()), (0, vec![0]));
    let report = repo.insert_many_unordered(&[]).await.unwrap();
    assert!(report.is_complete() && report.inserted == 0);
    assert_eq!(repo.insert(&event("next")).await.unwrap().id, first + 5);
    db.cleanup().await;
}

#[tokio::test]
async fn empty_input_is_a_complete_empty_report() {
    let db = Db::new().await;
    let repo = db.mongo.repo::<Trace>();
    let report = repo.insert_many_unordered(&[]).await.unwrap();
    assert!(report.is_complete());
    assert_eq!(report.inserted, 0);
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 0);
    db.cleanup().await;
}

/// Inside a unit of work it is refused before anything is sent (a refused
/// document would abort the transaction); the unit itself stays usable.
#[tokio::test]
async fn a_unit_of_work_refuses_it_and_stays_usable() {
    let db = Db::new().await;
    let unit = db.mongo.begin().await.unwrap();
    let err = unit
        .repo::<Trace>()
        .insert_many_unordered(&traces(3))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { entity: "Trace", field, .. }
            if field == "insert_many_unordered"),
        "{err:?}"
    );
    unit.repo::<Trace>().insert(&trace(7)).await.unwrap();
    unit.commit().await.unwrap();
    assert_eq!(
        stored_ids(&db).await,
        BTreeSet::from(["t-00007".to_owned()])
    );
    db.cleanup().await;
}

/// A proxy to the MongoDB server that answers the first `answered`
/// `insert` commands and loses the reply to every later one (the commands
/// reach the server, which stores what it can).
async fn losing_insert_replies_after(answered: u32) -> FaultProxy {
    let proxy = FaultProxy::start(host_port(&mongodb_url()), Wire::Mongo).await;
    let inserts = Matcher::mongo_command("insert");
    proxy.set_mode(Mode::LoseReply(ReplyLoss::new(inserts).after(answered)));
    proxy
}

/// `host:port` of the MongoDB server in `url`.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let hosts = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    hosts[..hosts.find(['/', '?']).unwrap_or(hosts.len())].to_owned()
}

/// The reply to the second batch's command is lost: its outcome is unknown,
/// so the call stops with `CommitOutcomeUnknown` saying what was confirmed
/// (the first batch, less its one duplicate) and the third batch is never sent.
#[tokio::test]
async fn a_lost_reply_stops_the_call_with_an_unknown_outcome() {
    let db = Db::new().await;
    let proxy = losing_insert_replies_after(1).await;
    let url = with_host(&mongodb_url(), &proxy.host_port());
    let config = MongoConfig::new(url).database(db.mongo.database().name());
    let client = MongoBackend::connect(&config).await.unwrap();
    db.mongo.repo::<Trace>().insert(&trace(10)).await.unwrap();
    let err = client
        .repo::<Trace>()
        .insert_many_unordered(&traces(2_500))
        .await
        .unwrap_err();
    let Error::CommitOutcomeUnknown { reason, .. } = &err else {
        panic!("expected CommitOutcomeUnknown, got {err:?}");
    };
    assert!(reason.contains("positions 1000..=1999"), "{reason}");
    assert!(
        reason.contains("999 documents of this call were confirmed stored before it and 1 refused"),
        "{reason}"
    );
    assert!(
        reason.contains("500 prepared documents after it were not sent"),
        "{reason}"
    );
    assert!(!err.is_retryable());
    assert!(
        proxy.stats().lost >= 1,
        "{} replies lost",
        proxy.stats().lost
    );
    assert!(
        proxy.stats().matched >= 2,
        "{} inserts sent",
        proxy.stats().matched
    );
    let ids = stored_ids(&db).await;
    assert!((0..1_000).all(|i| ids.contains(&trace(i).id)));
    assert!((2_000..2_500).all(|i| !ids.contains(&trace(i).id)));
    client.close().await;
    db.cleanup().await;
}

/// `insert_many` past the transaction limit (ordered batches, undone on
/// failure) loses the reply to its second batch, which the server refused
/// at a document another writer had stored under the same id. The call
/// reports the unknown outcome, deletes what it knows it stored, and leaves
/// the other writer's document alone: the batch's ids were supplied by the
/// caller, so a delete by `_id` could not tell whose document it removes.
#[tokio::test]
async fn an_unknown_insert_many_batch_never_deletes_another_writers_document() {
    let db = Db::new().await;
    let theirs = Trace {
        span: "s-theirs".into(),
        body: "another writer's".into(),
        ..trace(1_500)
    };
    db.mongo.repo::<Trace>().insert(&theirs).await.unwrap();
    let proxy = losing_insert_replies_after(1).await;
    let url = with_host(&mongodb_url(), &proxy.host_port());
    let config = MongoConfig::new(url).database(db.mongo.database().name());
    let client = MongoBackend::connect(&config).await.unwrap();
    let err = client
        .repo::<Trace>()
        .insert_many(&traces(10_001))
        .await
        .unwrap_err();
    let Error::CommitOutcomeUnknown { reason, .. } = &err else {
        panic!("expected CommitOutcomeUnknown, got {err:?}");
    };
    assert!(reason.contains("ids you supplied"), "{reason}");
    assert!(
        proxy.stats().lost >= 1,
        "{} replies lost",
        proxy.stats().lost
    );
    let kept = db.mongo.repo::<Trace>().get(&theirs.id).await.unwrap();
    assert_eq!(kept, Some(theirs), "the other writer's document survives");
    let ids = stored_ids(&db).await;
    assert!(
        (0..1_000).all(|i| !ids.contains(&trace(i).id)),
        "the confirmed first batch was deleted again"
    );
    client.close().await;
    db.cleanup().await;
}
