//! `#[repo(embed(from = ".."))]` with an application embedder: missing
//! vectors filled on insert in batches, search by text, and a misbehaving
//! model rejected with nothing written.

use std::sync::Arc;

use reposmith::prelude::*;
use reposmith_tests::letters::Letters;

use super::db::SearchDb;

/// A note whose embedding is computed from its body when missing.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "notes")]
pub(crate) struct Note {
    #[repo(id)]
    pub(crate) id: uuid::Uuid,
    pub(crate) body: String,
    #[repo(
        vector(dims = 26, distance = "cosine", index = "none"),
        embed(from = "body")
    )]
    pub(crate) embedding: Option<Vector>,
}

fn note(body: &str) -> Note {
    Note {
        id: uuid::Uuid::nil(),
        body: body.to_owned(),
        embedding: None,
    }
}

#[tokio::test]
async fn missing_embeddings_are_filled_in_batches_and_text_search_embeds_the_query() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Note>().await;
    let letters = Arc::new(Letters::new(26));
    let repo = db.pg.repo::<Note>().with_embedder(letters.clone());

    let one = repo.insert(&note("abc")).await.unwrap();
    assert_eq!(
        one.embedding.as_ref().unwrap().as_slice()[..3],
        [1.0, 1.0, 1.0]
    );
    let given = Note {
        embedding: Some(Vector::from(vec![1.0; 26])),
        ..note("zzz")
    };
    let kept = repo.insert(&given).await.unwrap();
    assert_eq!(
        kept.embedding, given.embedding,
        "a present vector is not recomputed"
    );
    assert_eq!(letters.calls(), 1);

    let batch: Vec<Note> = [
        "xyz", "xxy", "abd", "hello", "world", "qqq", "abc abc", "mno", "pqr",
    ]
    .iter()
    .map(|b| note(b))
    .collect();
    repo.insert_many(&batch).await.unwrap();
    assert_eq!(letters.calls(), 1 + 3, "9 texts in batches of 4");

    let mut edited = one.clone();
    edited.body = "zzz".to_owned();
    edited.embedding = None;
    let updated = repo.update(&edited).await.unwrap();
    assert_eq!(
        updated.embedding.as_ref().unwrap().as_slice()[25],
        3.0,
        "re-embedded on update"
    );
    repo.update(&Note {
        body: "abc".to_owned(),
        embedding: None,
        ..updated
    })
    .await
    .unwrap();

    let hits = repo.search_embedding_by_text("cab", 2).await.unwrap();
    let bodies: Vec<_> = hits.iter().map(|h| h.entity.body.as_str()).collect();
    assert_eq!(bodies, ["abc", "abc abc"]);
    db.cleanup().await;
}

#[tokio::test]
async fn a_failing_or_misshapen_embedder_writes_nothing() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Note>().await;
    let repo = db
        .pg
        .repo::<Note>()
        .with_embedder(Arc::new(Letters::new(26)));
    let err = repo
        .insert_many(&[note("fine"), note("fail")])
        .await
        .unwrap_err();
    match err {
        Error::Embedding { field, reason, .. } => {
            assert_eq!(field, "embedding");
            assert!(reason.contains("model unavailable"));
        }
        other => panic!("{other}"),
    }
    let short = db
        .pg
        .repo::<Note>()
        .with_embedder(Arc::new(Letters::new(5)));
    let err = short.insert(&note("abc")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Embedding { reason, .. } if reason.contains("expected 26")),
        "{err}"
    );
    let none = db
        .pg
        .repo::<Note>()
        .search_embedding_by_text("abc", 3)
        .await
        .unwrap_err();
    assert!(matches!(none, Error::InvalidInput { .. }), "{none}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM {schema}.notes").await,
        0
    );
    db.cleanup().await;
}

/// An embedder set on the backend reaches every repository of the entity,
/// the ones of a unit of work included.
#[tokio::test]
async fn a_backend_embedder_reaches_units_of_work() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Note>().await;
    db.pg.set_embedder::<Note>(Arc::new(Letters::new(26)));
    let unit = db.pg.begin().await.unwrap();
    let stored = unit.repo::<Note>().insert(&note("abc")).await.unwrap();
    unit.commit().await.unwrap();
    assert!(stored.embedding.is_some(), "embedded inside the unit");
    let hits = db
        .pg
        .repo::<Note>()
        .search_embedding_by_text("abc", 1)
        .await
        .unwrap();
    assert_eq!(hits[0].entity.id, stored.id);
    db.cleanup().await;
}

/// A patch that changes the embed source re-embeds it with the
/// repository's embedder (also in `update_where`); without one, the stale
/// vector is cleared; a vector set directly is checked against its
/// column (dimensions, NaN) and a NUL in text is refused, nothing written.
#[tokio::test]
async fn a_patch_of_the_source_text_re_embeds_and_a_patched_vector_is_checked() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Note>().await;
    let letters = Arc::new(Letters::new(26));
    let repo = db.pg.repo::<Note>().with_embedder(letters.clone());
    let one = repo.insert(&note("abc")).await.unwrap();

    let patched = repo.patch(&one.id, Note::BODY.set("zzz")).await.unwrap();
    let vector = patched.embedding.as_ref().unwrap().as_slice();
    assert_eq!(
        (vector[0], vector[25]),
        (0.0, 3.0),
        "re-embedded from the new text"
    );
    assert_eq!(repo.get(&one.id).await.unwrap().unwrap(), patched);

    let rows = repo
        .update_where(Note::ID.eq(one.id), Note::BODY.set("aa"))
        .returning()
        .await
        .unwrap();
    assert_eq!(rows[0].embedding.as_ref().unwrap().as_slice()[0], 2.0);

    let bare = db.pg.repo::<Note>().without_embedder();
    let cleared = bare.patch(&one.id, Note::BODY.set("q")).await.unwrap();
    assert_eq!(cleared.embedding, None, "no stale vector is kept");

    let before = repo.get(&one.id).await.unwrap().unwrap();
    let short = Note::EMBEDDING.set(Vector::from(vec![1.0; 3]));
    let nan = Note::EMBEDDING.set(Vector::from(vec![f32::NAN; 26]));
    for bad in [short, nan, Note::BODY.set("nul\0")] {
        let refused = repo.patch(&one.id, bad).await;
        assert!(
            matches!(refused, Err(Error::InvalidInput { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(repo.get(&one.id).await.unwrap().unwrap(), before);
    let given = Vector::from(vec![0.5; 26]);
    let set = repo
        .patch(
            &one.id,
            Note::EMBEDDING
                .set(given.clone())
                .and(Note::BODY.set("kept")),
        )
        .await
        .unwrap();
    assert_eq!(
        set.embedding,
        Some(given),
        "a vector given with the text is not recomputed"
    );
    db.cleanup().await;
}
