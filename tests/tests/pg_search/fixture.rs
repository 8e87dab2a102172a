//! The test aids of `reposmith_core::testing` against a real pgvector:
//! an exact search over a seeded `VectorFixture` returns its precomputed
//! neighbours, and `TestEmbedder` vectors rank a one-word edit first.

use std::sync::Arc;

use reposmith::prelude::*;
use reposmith_core::testing::{FixtureSpec, TestEmbedder, VectorFixture};

use super::db::SearchDb;

/// A fixture point: its position in the fixture is its id. No index, so
/// searches are exact (a sequential scan).
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "fixture_points")]
struct FixturePoint {
    #[repo(id(assigned))]
    id: i64,
    #[repo(vector(dims = 64, distance = "cosine", index = "none"))]
    embedding: Vector,
}

/// A sentence embedded by the test embedder from its text.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "fixture_sentences")]
struct Sentence {
    #[repo(id(assigned))]
    id: i64,
    text: String,
    #[repo(
        vector(dims = 128, distance = "cosine", index = "none"),
        embed(from = "text")
    )]
    embedding: Option<Vector>,
}

#[tokio::test]
async fn an_exact_search_returns_the_fixtures_precomputed_neighbours() {
    let spec = FixtureSpec::new(2_000, 64, 8, 19).queries(12).k(10);
    let fixture = VectorFixture::generate(spec).unwrap();
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<FixturePoint>().await;
    let repo = db.pg.repo::<FixturePoint>();
    let rows: Vec<FixturePoint> = fixture
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| FixturePoint {
            id: i as i64,
            embedding: Vector::from(v.clone()),
        })
        .collect();
    assert_eq!(repo.insert_many(&rows).await.unwrap(), 2_000);
    for (q, query) in fixture.queries.iter().enumerate() {
        let hits = repo
            .search_embedding(Vector::from(query.clone()), 10)
            .await
            .unwrap();
        let found: Vec<usize> = hits.iter().map(|h| h.entity.id as usize).collect();
        assert_eq!(fixture.recall(q, &found), 1.0, "query {q}");
        for (hit, exact) in hits.iter().zip(&fixture.neighbours[q]) {
            assert!((hit.distance.unwrap() - exact.distance).abs() < 1e-5);
        }
    }
    db.cleanup().await;
}

#[tokio::test]
async fn the_test_embedder_ranks_a_one_word_edit_first() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Sentence>().await;
    let model = Arc::new(TestEmbedder::new(128).unwrap().with_max_batch(2));
    let repo = db.pg.repo::<Sentence>().with_embedder(model.clone());
    let texts = [
        "the quick brown fox jumps over the lazy dog",
        "postgres streams its write ahead log to replicas",
        "a unit of work commits every change or none",
        "redis caches hot rows for a few minutes",
        "mongodb keeps chat history in capped collections",
    ];
    let rows: Vec<Sentence> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Sentence {
            id: i as i64,
            text: (*t).to_owned(),
            embedding: None,
        })
        .collect();
    repo.insert_many(&rows).await.unwrap();
    assert_eq!((model.calls(), model.texts_embedded()), (3, 5));
    let stored = repo.get(&3).await.unwrap().unwrap();
    let expected = model.vector(texts[3]);
    assert_eq!(stored.embedding.unwrap().as_slice(), expected.as_slice());
    for (i, text) in texts.iter().enumerate() {
        let edited = text.replacen(' ', " very ", 1);
        let hits = repo.search_embedding_by_text(&edited, 2).await.unwrap();
        assert_eq!(hits[0].entity.id, i as i64, "{edited:?}");
    }
    db.cleanup().await;
}
