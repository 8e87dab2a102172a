//! `#[repo(embed(from = ".."))]` on MongoDB: missing vectors are filled by
//! the repository's embedder on insert, `insert_many` (in batches), update
//! and upsert; `search_<field>_by_text` embeds the query; a failing or
//! misshapen model writes nothing; a backend's embedder reaches its units
//! of work.

use std::sync::Arc;

use reposmith::mongo::mongodb::bson::doc;
use reposmith::prelude::*;
use reposmith_tests::letters::Letters;

use super::db::SearchDb;

/// A chat message whose embedding is computed from its text when missing.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "memories")]
pub(crate) struct Memory {
    #[repo(id)]
    pub(crate) id: reposmith::ObjectId,
    pub(crate) text: String,
    #[repo(
        vector(dims = 26, distance = "cosine", index = "hnsw"),
        embed(from = "text")
    )]
    pub(crate) embedding: Option<Vector>,
}

fn memory(text: &str) -> Memory {
    Memory {
        id: reposmith::ObjectId::ZERO,
        text: text.to_owned(),
        embedding: None,
    }
}

#[tokio::test]
async fn missing_embeddings_are_filled_and_text_search_embeds_the_query() {
    let db = SearchDb::new().await;
    db.create::<Memory>().await;
    let letters = Arc::new(Letters::new(26));
    let repo = db.mongo.repo::<Memory>().with_embedder(letters.clone());

    let one = repo.insert(&memory("abc")).await.unwrap();
    assert_eq!(
        one.embedding.as_ref().unwrap().as_slice()[..3],
        [1.0, 1.0, 1.0]
    );
    let given = Memory {
        embedding: Some(Vector::from(vec![1.0; 26])),
        ..memory("zzz")
    };
    let kept = repo.insert(&given).await.unwrap();
    assert_eq!(kept.embedding, given.embedding, "a present vector is kept");
    assert_eq!(letters.calls(), 1);

    let batch: Vec<Memory> = [
        "xyz", "xxy", "abd", "hello", "world", "qqq", "abc abc", "mno", "pqr",
    ]
    .iter()
    .map(|t| memory(t))
    .collect();
    repo.insert_many(&batch).await.unwrap();
    assert_eq!(letters.calls(), 1 + 3, "9 texts in batches of 4");
    let report = repo
        .insert_many_unordered(&[memory("uvw"), memory("stu")])
        .await
        .unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(letters.calls(), 1 + 3 + 1, "the unordered path embeds too");
    let stored = repo.find(Filter::all()).await.unwrap();
    assert_eq!(stored.len(), 13);
    assert!(stored.iter().all(|m| m.embedding.is_some()), "all embedded");

    let mut edited = one.clone();
    edited.text = "zzz".to_owned();
    edited.embedding = None;
    let updated = repo.update(&edited).await.unwrap();
    assert_eq!(
        updated.embedding.as_ref().unwrap().as_slice()[25],
        3.0,
        "re-embedded on update"
    );
    let upserted = repo
        .upsert(&Memory {
            text: "abc".to_owned(),
            embedding: None,
            ..updated
        })
        .await
        .unwrap();
    assert_eq!(upserted.embedding.as_ref().unwrap().as_slice()[0], 1.0);

    let hits = repo.search_embedding_by_text("cab", 2).await.unwrap();
    let texts: Vec<_> = hits.iter().map(|h| h.entity.text.as_str()).collect();
    assert_eq!(texts, ["abc", "abc abc"]);
    let calls = letters.calls();
    let bad = repo.search_embedding_by_text("abc", 0).await.unwrap_err();
    assert!(matches!(bad, Error::InvalidInput { .. }), "{bad}");
    assert_eq!(letters.calls(), calls, "bad arguments cost no model call");
    db.cleanup().await;
}

#[tokio::test]
async fn a_failing_or_misshapen_embedder_writes_nothing() {
    let db = SearchDb::new().await;
    db.create::<Memory>().await;
    let repo = db
        .mongo
        .repo::<Memory>()
        .with_embedder(Arc::new(Letters::new(26)));
    let err = repo
        .insert_many(&[memory("fine"), memory("fail")])
        .await
        .unwrap_err();
    match err {
        Error::Embedding { field, reason, .. } => {
            assert_eq!(field, "embedding");
            assert!(reason.contains("model unavailable"), "{reason}");
        }
        other => panic!("{other}"),
    }
    let short = db
        .mongo
        .repo::<Memory>()
        .with_embedder(Arc::new(Letters::new(5)));
    let err = short.insert(&memory("abc")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Embedding { reason, .. } if reason.contains("expected 26")),
        "{err}"
    );
    let none = db
        .mongo
        .repo::<Memory>()
        .search_embedding_by_text("abc", 3)
        .await
        .unwrap_err();
    assert!(
        matches!(&none, Error::InvalidInput { reason, .. } if reason.contains("embedder")),
        "{none}"
    );
    let raw = db
        .mongo
        .database()
        .collection::<reposmith::mongo::mongodb::bson::Document>("memories");
    assert_eq!(raw.count_documents(doc! {}).await.unwrap(), 0);
    db.cleanup().await;
}

/// An embedder set on the backend reaches every repository of the entity,
/// the ones of a unit of work included.
#[tokio::test]
async fn a_backend_embedder_reaches_units_of_work() {
    let db = SearchDb::new().await;
    db.create::<Memory>().await;
    db.mongo.set_embedder::<Memory>(Arc::new(Letters::new(26)));
    let unit = db.mongo.begin().await.unwrap();
    let stored = unit.repo::<Memory>().insert(&memory("abc")).await.unwrap();
    unit.commit().await.unwrap();
    assert!(stored.embedding.is_some(), "embedded inside the unit");
    let hits = db
        .mongo
        .repo::<Memory>()
        .search_embedding_by_text("abc", 1)
        .await
        .unwrap();
    assert_eq!(hits[0].entity.id, stored.id);
    db.cleanup().await;
}

/// A patch that changes the embed source re-embeds it with the
/// repository's embedder (also in `update_where`); without one, the stale
/// vector is cleared; a vector set directly is checked against its column.
#[tokio::test]
async fn a_patch_of_the_source_text_re_embeds_and_a_patched_vector_is_checked() {
    let db = SearchDb::new().await;
    db.create::<Memory>().await;
    let letters = Arc::new(Letters::new(26));
    let repo = db.mongo.repo::<Memory>().with_embedder(letters.clone());
    let one = repo.insert(&memory("abc")).await.unwrap();

    let patched = repo.patch(&one.id, Memory::TEXT.set("zzz")).await.unwrap();
    let vector = patched.embedding.as_ref().unwrap().as_slice();
    assert_eq!(
        (vector[0], vector[25]),
        (0.0, 3.0),
        "re-embedded from the new text"
    );
    assert_eq!(repo.get(&one.id).await.unwrap().unwrap(), patched);

    let rows = repo
        .update_where(Memory::ID.eq(one.id), Memory::TEXT.set("aa"))
        .returning()
        .await
        .unwrap();
    assert_eq!(rows[0].embedding.as_ref().unwrap().as_slice()[0], 2.0);

    let bare = db.mongo.repo::<Memory>().without_embedder();
    let cleared = bare.patch(&one.id, Memory::TEXT.set("q")).await.unwrap();
    assert_eq!(cleared.embedding, None, "no stale vector is kept");

    let before = repo.get(&one.id).await.unwrap().unwrap();
    let short = Memory::EMBEDDING.set(Vector::from(vec![1.0; 3]));
    let nan = Memory::EMBEDDING.set(Vector::from(vec![f32::NAN; 26]));
    for bad in [short, nan] {
        let refused = repo.patch(&one.id, bad).await;
        assert!(
            matches!(refused, Err(Error::InvalidInput { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(repo.get(&one.id).await.unwrap().unwrap(), before);
    db.cleanup().await;
}
