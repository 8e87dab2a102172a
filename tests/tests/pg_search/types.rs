//! halfvec, sparsevec and bit: round trips and searches; and every bad
//! vector rejected before anything is sent.

use reposmith::Bit;
use reposmith::prelude::*;

use super::db::SearchDb;

/// One field of each pgvector type, plus an optional dense one.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "mixed")]
pub(crate) struct Mixed {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(vector(dims = 4, distance = "l2", index = "hnsw"))]
    pub(crate) half: HalfVector,
    #[repo(vector(dims = 10, distance = "inner_product", index = "hnsw"))]
    pub(crate) sparse: SparseVector,
    #[repo(vector(dims = 8, distance = "hamming", index = "hnsw"))]
    pub(crate) bits: Bit,
    #[repo(vector(dims = 3, distance = "cosine", index = "ivfflat", lists = 1))]
    pub(crate) dense: Option<Vector>,
}

fn mixed(id: i64, seed: f32) -> Mixed {
    Mixed {
        id,
        half: HalfVector::from_f32_slice(&[seed, 1.0, -0.5, 2.0]),
        sparse: SparseVector::from_dense(&[0.0, seed, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
        bits: Bit::new(&[true, false, seed > 1.0, false, true, true, false, false]),
        dense: (id % 2 == 0).then(|| Vector::from(vec![seed, 1.0, 0.0])),
    }
}

#[tokio::test]
async fn halfvec_sparsevec_and_bit_round_trip_and_search() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Mixed>().await;
    let repo = db.pg.repo::<Mixed>();
    let rows: Vec<Mixed> = (1..=6).map(|i| mixed(i, i as f32 * 0.5)).collect();
    repo.insert(&rows[0]).await.unwrap();
    repo.insert_many(&rows[1..]).await.unwrap();
    for row in &rows {
        assert_eq!(repo.get(&row.id).await.unwrap().as_ref(), Some(row));
    }

    let near = repo
        .search_half(HalfVector::from_f32_slice(&[1.5, 1.0, -0.5, 2.0]), 1)
        .await
        .unwrap();
    assert_eq!(near[0].entity.id, 3);
    assert_eq!(near[0].distance, Some(0.0));

    // Inner product: pgvector reports it negated, so the largest product comes first.
    let query = SparseVector::from_dense(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let best = repo.search_sparse(query, 2).await.unwrap();
    assert_eq!(best[0].entity.id, 6);
    assert_eq!(best[0].distance, Some(-3.0));

    let bits = Bit::new(&[true, false, true, false, true, true, false, false]);
    let hits = repo.search_bits(bits, 6).await.unwrap();
    assert_eq!(hits[0].distance, Some(0.0));
    assert!(hits[0].entity.id >= 3, "seed > 1 sets the third bit");
    assert_eq!(hits.last().unwrap().distance, Some(1.0));

    let dense = repo
        .search_dense(Vector::from(vec![1.0, 1.0, 0.0]), 10)
        .probes(1)
        .await
        .unwrap();
    assert_eq!(dense.len(), 3, "rows with a NULL vector are never hits");
    db.cleanup().await;
}

#[tokio::test]
async fn every_bad_vector_is_rejected_before_sending() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Mixed>().await;
    let repo = db.pg.repo::<Mixed>();
    let good = mixed(1, 1.0);
    let cases: Vec<(Mixed, &str, &str)> = vec![
        (
            Mixed {
                half: HalfVector::from_f32_slice(&[1.0, 2.0]),
                ..good.clone()
            },
            "half",
            "has 2 dimensions; expected 4",
        ),
        (
            Mixed {
                half: HalfVector::from_f32_slice(&[]),
                ..good.clone()
            },
            "half",
            "is empty; expected 4",
        ),
        (
            Mixed {
                half: HalfVector::from_f32_slice(&[1.0, 1e6, 0.0, 0.0]),
                ..good.clone()
            },
            "half",
            "inf at index 1",
        ),
        (
            Mixed {
                dense: Some(Vector::from(vec![1.0, f32::NAN, 0.0])),
                ..good.clone()
            },
            "dense",
            "NaN at index 1",
        ),
        (
            Mixed {
                dense: Some(Vector::from(vec![f32::NEG_INFINITY, 0.0, 0.0])),
                ..good.clone()
            },
            "dense",
            "-inf at index 0",
        ),
        (
            Mixed {
                dense: Some(Vector::from(vec![0.0, 0.0, 0.0])),
                ..good.clone()
            },
            "dense",
            "all zeros",
        ),
        (
            Mixed {
                sparse: SparseVector::from_dense(&[1.0; 11]),
                ..good.clone()
            },
            "sparse",
            "has 11 dimensions; expected 10",
        ),
        (
            Mixed {
                bits: Bit::new(&[true; 9]),
                ..good.clone()
            },
            "bits",
            "has 9 dimensions; expected 8",
        ),
    ];
    for (row, field, reason) in cases {
        for outcome in [repo.insert(&row).await, repo.upsert(&row).await] {
            match outcome.unwrap_err() {
                Error::InvalidInput {
                    field: f,
                    reason: r,
                    ..
                } => {
                    assert_eq!(f, field);
                    assert!(r.contains(reason), "{r} should say {reason}");
                }
                other => panic!("{other}"),
            }
        }
        let many = repo
            .insert_many(&[mixed(50, 1.0), row.clone()])
            .await
            .unwrap_err();
        assert!(matches!(many, Error::InvalidInput { .. }), "{many}");
    }
    let wrong = repo
        .search_dense(Vector::from(vec![1.0, 2.0]), 3)
        .await
        .unwrap_err();
    match wrong {
        Error::InvalidInput { field, reason, .. } => {
            assert_eq!(field, "dense");
            assert!(
                reason.contains("query vector has 2 dimensions; expected 3"),
                "{reason}"
            );
        }
        other => panic!("{other}"),
    }
    let nan = repo
        .search_half(HalfVector::from_f32_slice(&[f32::NAN; 4]), 3)
        .await
        .unwrap_err();
    assert!(matches!(nan, Error::InvalidInput { .. }));
    let k = repo
        .search_half(HalfVector::from_f32_slice(&[1.0; 4]), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(k, Error::InvalidInput { ref field, .. } if field == "k"),
        "{k}"
    );
    let rows = db.scalar_i64("SELECT count(*) FROM {schema}.mixed").await;
    assert_eq!(rows, 0, "nothing was written");
    db.cleanup().await;
}

/// Sparse vectors with NaN values or indices outside the dimension are refused.
#[tokio::test]
async fn malformed_sparse_vectors_are_refused() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Mixed>().await;
    let repo = db.pg.repo::<Mixed>();
    let mut nan = std::collections::HashMap::new();
    nan.insert(2, f32::NAN);
    let mut outside = std::collections::HashMap::new();
    outside.insert(10, 1.0f32);
    for (sparse, reason) in [
        (SparseVector::from_map(&nan, 10), "NaN at index 2"),
        (
            SparseVector::from_map(&outside, 10),
            "index 10, outside 0..10",
        ),
    ] {
        let row = Mixed {
            sparse,
            ..mixed(1, 1.0)
        };
        match repo.insert(&row).await.unwrap_err() {
            Error::InvalidInput {
                field, reason: r, ..
            } => {
                assert_eq!(field, "sparse");
                assert!(r.contains(reason), "{r}");
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM {schema}.mixed").await,
        0
    );
    db.cleanup().await;
}
