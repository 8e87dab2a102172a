//! The JSON corpus through a `jsonb` column and a MongoDB document field:
//! `\u0000` in keys and values, NaN and ±Infinity in a `#[repo(json)]`
//! struct, `u64::MAX`, `1e400`, lone surrogates, nesting at and past the
//! depth limit and at 200, a 10 MB value, and MongoDB's document limit and
//! one byte past it. Each gets the policy `reposmith_core::json` documents,
//! before the database: a typed error naming the field (and nothing
//! written), or the value stored and read back exactly.

use reposmith::{Error, Filter, Repository};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::mongo_repository::db::MongoDb;
use crate::pg_repository::db::Db;

/// A document with a free JSON field, a typed JSON field and a text body.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "corpus")]
struct Corpus {
    #[repo(id)]
    key: String,
    #[repo(json)]
    meta: Json,
    #[repo(json)]
    stats: Option<Stats>,
    body: String,
}

/// Numbers serde_json would silently write as `null` when not finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stats {
    ratio: f64,
    samples: Vec<f32>,
}

fn corpus(key: &str, meta: Json) -> Corpus {
    Corpus {
        key: key.to_owned(),
        meta,
        stats: None,
        body: String::new(),
    }
}

/// `levels` arrays around a number, built without `json!` (which would
/// serialize the inner value, recursively).
fn nested(levels: usize) -> Json {
    (0..levels).fold(json!(1), |inner, _| Json::Array(vec![inner]))
}

/// What a backend does with each entry of the corpus.
struct Expect {
    /// `\u0000` in a string value is stored (MongoDB) rather than refused.
    nul_value_stored: bool,
    /// `u64::MAX` is stored exactly (PostgreSQL's `numeric`) rather than refused.
    u64_stored: bool,
}

/// Stores `doc` and reads it back equal.
async fn round_trip<R: Repository<Corpus>>(repo: &R, doc: Corpus, what: &str) {
    let stored = repo
        .insert(&doc)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(stored, doc, "{what}: the insert's answer");
    let read = repo.get(&doc.key).await.unwrap();
    assert!(read.as_ref() == Some(&doc), "{what}: read back differs");
    assert!(repo.delete(&doc.key).await.unwrap(), "{what}");
}

/// Refused as invalid input naming `field`, and nothing written.
async fn refused<R: Repository<Corpus>>(repo: &R, doc: Corpus, field: &str, what: &str) {
    match repo.insert(&doc).await {
        Err(Error::InvalidInput {
            field: f, reason, ..
        }) if f == field && !reason.is_empty() => {}
        other => panic!("{what}: expected InvalidInput on {field}, got {other:?}"),
    }
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        0,
        "{what}: written"
    );
}

async fn corpus_on<R: Repository<Corpus>>(repo: &R, expect: Expect) -> usize {
    let mut entries = 0;
    let mut entry = || entries += 1;

    entry();
    refused(
        repo,
        corpus("k", json!({"a\u{0}b": 1})),
        "meta",
        "NUL in a key",
    )
    .await;
    entry();
    let nul_value = corpus("k", json!({"a": "x\u{0}y"}));
    if expect.nul_value_stored {
        round_trip(repo, nul_value, "NUL in a value").await;
    } else {
        refused(repo, nul_value, "meta", "NUL in a value").await;
    }

    for (ratio, samples) in [
        (f64::NAN, vec![]),
        (f64::INFINITY, vec![]),
        (f64::NEG_INFINITY, vec![]),
        (0.5, vec![1.0, f32::NAN]),
    ] {
        entry();
        let mut doc = corpus("k", json!({}));
        doc.stats = Some(Stats { ratio, samples });
        refused(repo, doc, "stats", "a non-finite float").await;
    }
    entry();
    let mut finite = corpus("k", json!({}));
    finite.stats = Some(Stats {
        ratio: f64::MAX,
        samples: vec![f32::MIN_POSITIVE, -0.0],
    });
    round_trip(repo, finite, "extreme finite floats").await;

    entry();
    let big = corpus("k", json!({"n": u64::MAX, "m": i64::MIN}));
    if expect.u64_stored {
        round_trip(repo, big, "u64::MAX").await;
    } else {
        refused(repo, big, "meta", "u64::MAX").await;
    }

    // These never become a serde_json::Value: the caller's parse fails, so
    // no reposmith call can receive them.
    for text in [
        "1e400",
        "-1e400",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "NaN",
        "Infinity",
    ] {
        entry();
        let parsed = serde_json::from_str::<Json>(text);
        assert!(parsed.is_err(), "{text} parsed as {parsed:?}");
    }

    let limit = reposmith_core::json::MAX_JSON_DEPTH;
    entry();
    round_trip(repo, corpus("k", nested(limit)), "nesting at the limit").await;
    for depth in [limit + 1, 200] {
        entry();
        refused(
            repo,
            corpus("k", nested(depth)),
            "meta",
            "nesting past the limit",
        )
        .await;
    }
    entry();
    match repo.count(Corpus::META.path("a").eq(nested(200))).await {
        Err(Error::InvalidInput { field, .. }) if field == "meta" => {}
        other => panic!("a filter nested 200 deep: {other:?}"),
    }

    entry();
    let ten_mb = "🦀 \"quoted\" \\ ".repeat(10_000_000 / 16);
    round_trip(repo, corpus("k", json!({ "big": ten_mb })), "a 10 MB value").await;
    entries
}

#[tokio::test]
async fn the_json_corpus_on_postgres_gets_its_policy_before_the_database() {
    let db = Db::new().await;
    db.pg.create_tables::<Corpus>().await.unwrap();
    let repo = db.pg.repo::<Corpus>();
    let expect = Expect {
        nul_value_stored: false,
        u64_stored: true,
    };
    let entries = corpus_on(&repo, expect).await;
    db.cleanup().await;
    eprintln!(
        "{entries} JSON corpus entries on PostgreSQL: each refused by name or read back exactly"
    );
}

#[tokio::test]
async fn the_json_corpus_on_mongodb_gets_its_policy_before_the_database() {
    let db = MongoDb::new().await;
    db.mongo.create_collections::<Corpus>().await.unwrap();
    let repo = db.mongo.repo::<Corpus>();
    let expect = Expect {
        nul_value_stored: true,
        u64_stored: false,
    };
    let mut entries = corpus_on(&repo, expect).await;
    entries += 1;
    refused(
        &repo,
        corpus("k", json!({"q": {"$ne": ""}})),
        "meta",
        "an operator key",
    )
    .await;
    entries += document_limit(&repo).await;
    db.cleanup().await;
    eprintln!(
        "{entries} JSON corpus entries on MongoDB: each refused by name or read back exactly"
    );
}

/// MongoDB's document limit exactly, and one byte past it. The refusal of
/// an oversized document reports its size, which gives the document's
/// overhead around the body, so the body that makes the document exactly
/// the limit is known without encoding it here.
async fn document_limit<R: Repository<Corpus>>(repo: &R) -> usize {
    let probe = 17 << 20;
    let (size, limit) = match repo.insert(&body_of(probe)).await {
        Err(Error::TooLarge { size, limit, .. }) => (size, limit),
        other => panic!("a 17 MiB document: {other:?}"),
    };
    assert_eq!(limit, 16 << 20, "MongoDB's maxBsonObjectSize");
    let exact = probe - (size - limit);
    match repo.insert(&body_of(exact + 1)).await {
        Err(Error::TooLarge { size, .. }) => assert_eq!(size, limit + 1),
        other => panic!("the limit plus one byte: {other:?}"),
    }
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        0,
        "nothing written"
    );
    let at_limit = body_of(exact);
    repo.insert(&at_limit)
        .await
        .expect("a document of exactly the limit");
    let read = repo.get(&at_limit.key).await.unwrap().unwrap();
    assert!(
        read.body.len() == exact && read == at_limit,
        "read back differs"
    );
    2
}

fn body_of(bytes: usize) -> Corpus {
    Corpus {
        body: "b".repeat(bytes),
        ..corpus("limit", json!({}))
    }
}
