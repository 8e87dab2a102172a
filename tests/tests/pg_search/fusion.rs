//! Hybrid search's convex fusion (`FusionMethod::Convex`) on a real
//! PostgreSQL, on five passages whose fused order is worked out by hand.
//!
//! The query is the text "rust" and the vector (1, 0). Cosine distances to
//! it are chosen: b 0, c 0.01, e 0.02, a 0.8, f 1. Only a and e mention
//! rust, with the same words, so their `ts_rank_cd` is equal. Over the five
//! candidates the vector side normalises to `(1 − d) / 1`: b 1, c 0.99, e
//! 0.98, a 0.2, f 0; the text side to a 1, e 1, the rest 0.

use reposmith::prelude::*;
use reposmith::search::{FusionMethod, MAX_K};
use reposmith::{PgRepository, Vector};

use super::db::SearchDb;

/// A passage with a full-text body and a two-dimensional cosine vector,
/// searched exactly (no index).
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "fusion_passages")]
struct FusionPassage {
    #[repo(id(assigned))]
    id: i64,
    #[repo(full_text)]
    body: String,
    #[repo(vector(dims = 2, distance = "cosine", index = "none"))]
    embedding: Vector,
}

const A: i64 = 1;
const B: i64 = 2;
const C: i64 = 3;
const E: i64 = 4;
const F: i64 = 5;

/// The unit vector at cosine distance `d` from (1, 0).
fn at_distance(d: f32) -> Vector {
    let cos = 1.0 - d;
    Vector::from(vec![cos, (1.0 - cos * cos).max(0.0).sqrt()])
}

async fn seeded() -> (SearchDb, PgRepository<FusionPassage>) {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<FusionPassage>().await;
    let repo = db.pg.repo::<FusionPassage>();
    let rows = [
        (A, "rust never sleeps", 0.8),
        (B, "unrelated words here", 0.0),
        (C, "other things entirely", 0.01),
        (E, "rust never sleeps", 0.02),
        (F, "nothing at all", 1.0),
    ];
    for (id, body, d) in rows {
        let passage = FusionPassage {
            id,
            body: body.to_owned(),
            embedding: at_distance(d),
        };
        repo.insert(&passage).await.unwrap();
    }
    (db, repo)
}

fn query() -> Vector {
    Vector::from(vec![1.0, 0.0])
}

fn ids(hits: &[Scored<FusionPassage>]) -> Vec<i64> {
    hits.iter().map(|h| h.entity.id).collect()
}

/// Convex fusion orders by `(wv · v + wt · t) / (wv + wt)` of the
/// normalised sides, where rank fusion orders by ranks alone.
#[tokio::test]
async fn convex_fusion_orders_by_the_weighted_normalised_scores() {
    let (db, repo) = seeded().await;
    let convex = |text: f64, vector: f64| {
        repo.search_hybrid("rust", query(), 5)
            .fusion(FusionMethod::Convex)
            .weights(text, vector)
    };
    // 1:1 — e (0.98 + 1) / 2 = 0.99, a (0.2 + 1) / 2 = 0.6, b 0.5, c 0.495, f 0.
    let even = convex(1.0, 1.0).await.unwrap();
    assert_eq!(ids(&even), [E, A, B, C, F], "{even:?}");
    let expected = [0.99, 0.6, 0.5, 0.495, 0.0];
    for (hit, want) in even.iter().zip(expected) {
        assert!((hit.score - want).abs() < 1e-3, "{hit:?} vs {want}");
    }
    // Both sides are scored for every candidate: a text hit has its distance,
    // a hit that does not match the text has no text rank.
    let by_id = |id: i64| even.iter().find(|h| h.entity.id == id).unwrap();
    assert!((by_id(A).distance.unwrap() - 0.8).abs() < 1e-3);
    assert!(by_id(A).text_rank.unwrap() > 0.0);
    assert_eq!(by_id(A).text_rank, by_id(E).text_rank);
    assert_eq!(by_id(B).text_rank, None);
    // Vector weight 3: b 0.75, c 0.7425 overtake a (0.6 + 1) / 4 = 0.4.
    let vector_heavy = convex(1.0, 3.0).await.unwrap();
    assert_eq!(ids(&vector_heavy), [E, B, C, A, F]);
    // Rank fusion on the same candidates puts a first: 1/64 + 1/61 beats
    // e's 1/63 + 1/62 (a is 1st on the text side by id, e 2nd).
    let rrf = repo.search_hybrid("rust", query(), 5).await.unwrap();
    assert_eq!(ids(&rrf)[..2], [A, E], "{rrf:?}");
    db.cleanup().await;
}

/// Weight 0 on one side leaves the other side's order.
#[tokio::test]
async fn convex_fusion_with_one_weight_zero_is_that_sides_order() {
    let (db, repo) = seeded().await;
    let fused = |text: f64, vector: f64| {
        repo.search_hybrid("rust", query(), 5)
            .fusion(FusionMethod::Convex)
            .weights(text, vector)
    };
    let vector = repo.search_embedding(query(), 5).await.unwrap();
    assert_eq!(ids(&vector), [B, C, E, A, F]);
    assert_eq!(ids(&fused(0.0, 1.0).await.unwrap()), ids(&vector));
    let text = repo.search_text("rust", 5).await.unwrap();
    assert_eq!(ids(&text), [A, E]);
    let text_first = fused(1.0, 0.0).await.unwrap();
    assert_eq!(ids(&text_first)[..2], ids(&text)[..]);
    assert!(
        text_first[2..].iter().all(|h| h.score == 0.0),
        "passages without the word add nothing: {text_first:?}"
    );
    db.cleanup().await;
}

/// Bad knobs are refused before anything is sent, with the knob's name.
#[tokio::test]
async fn convex_fusion_refuses_bad_knobs_with_typed_errors() {
    let (db, repo) = seeded().await;
    let convex = || {
        repo.search_hybrid("rust", query(), 5)
            .fusion(FusionMethod::Convex)
    };
    let field = |e: Error| match e {
        Error::InvalidInput { field, .. } => field,
        other => panic!("{other}"),
    };
    for (text, vector) in [
        (f64::NAN, 1.0),
        (1.0, f64::INFINITY),
        (-0.5, 1.0),
        (0.0, 0.0),
    ] {
        let e = convex().weights(text, vector).await.unwrap_err();
        assert_eq!(field(e), "weights", "{text} {vector}");
    }
    let e = convex().candidates(MAX_K + 1).await.unwrap_err();
    assert_eq!(field(e), "candidates");
    assert_eq!(convex().candidates(MAX_K).await.unwrap().len(), 5);
    db.cleanup().await;
}
