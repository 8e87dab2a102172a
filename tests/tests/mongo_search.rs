//! Vector search on a real MongoDB wire-protocol server (SecantusDB here:
//! no `$vectorSearch`, so every search takes the exact, server-side
//! aggregation): hits equal the exact neighbours computed in Rust, ids and
//! distances, for every distance and vector kind; filters are pre-filters;
//! `max_distance`; keyset pages equal one search; bad vectors are refused
//! before anything is sent; text and hybrid searches are refused with a
//! typed error; the TTL index of `#[repo(ttl)]`; and embedding on write and
//! search by text (`embedder`).

#[path = "mongo_search/data.rs"]
mod data;
#[path = "mongo_search/db.rs"]
mod db;
#[path = "mongo_search/embedder.rs"]
mod embedder;

use data::{Clustered, Rng, close, cosine, hamming, jaccard, l1, l2, nearest, negative_dot};
use db::SearchDb;
use reposmith::mongo::mongodb::bson::{Document, doc};
use reposmith::prelude::*;
use reposmith::{Bit, Cursor, MongoRepository, Vector};

/// A point of the clustered data set: 16 dims, L2 (searched exactly on a
/// server without `$vectorSearch`). Identity ids: 1, 2, .. in insertion order.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "points")]
struct Point {
    #[repo(id)]
    id: i64,
    /// `id % 20`, indexed.
    #[repo(index)]
    bucket: i32,
    #[repo(vector(dims = 16, distance = "l2", index = "hnsw"))]
    embedding: Vector,
}

/// One column per distance and vector kind.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "kinds")]
struct Kinds {
    #[repo(id)]
    id: i64,
    #[repo(vector(dims = 6, distance = "cosine", index = "hnsw"))]
    cos: Vector,
    #[repo(vector(dims = 6, distance = "inner_product", index = "hnsw"))]
    ip: Vector,
    #[repo(vector(dims = 6, distance = "l1", index = "hnsw"))]
    manhattan: Vector,
    #[repo(vector(dims = 6, distance = "l2", index = "hnsw"))]
    half: HalfVector,
    #[repo(vector(dims = 12, distance = "cosine", index = "none"))]
    sparse_cos: SparseVector,
    #[repo(vector(dims = 12, distance = "l2", index = "none"))]
    sparse_l2: SparseVector,
    #[repo(vector(dims = 12, distance = "l1", index = "none"))]
    sparse_l1: SparseVector,
    #[repo(vector(dims = 12, distance = "inner_product", index = "none"))]
    sparse_ip: SparseVector,
    #[repo(vector(dims = 10, distance = "hamming", index = "hnsw"))]
    bits: Bit,
    #[repo(vector(dims = 10, distance = "jaccard", index = "hnsw"))]
    jac: Bit,
    #[repo(vector(dims = 3, distance = "l2", index = "none"))]
    maybe: Option<Vector>,
}

/// A document with a full-text field and an embedding.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "articles")]
struct Article {
    #[repo(id)]
    id: i64,
    #[repo(full_text)]
    body: String,
    #[repo(vector(dims = 3, distance = "cosine"))]
    embedding: Vector,
}

/// A trace kept 30 days.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "traces")]
struct Trace {
    #[repo(id)]
    id: uuid::Uuid,
    prompt: String,
    #[repo(ttl = "30d")]
    recorded_at: chrono::DateTime<chrono::Utc>,
}

const ROWS: usize = 1_500;
const QUERIES: usize = 6;

fn points(set: &Clustered) -> Vec<Point> {
    set.vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            id: i as i64 + 1,
            bucket: (i % 20) as i32,
            embedding: Vector::from(v.clone()),
        })
        .collect()
}

/// Hits equal the exact `(distance, position)` list: same ids in the same
/// order, distances within 1e-6 relative, `score == distance`.
fn assert_exact(hits: &[Scored<Point>], exact: &[(f64, usize)]) {
    let ids: Vec<i64> = hits.iter().map(|h| h.entity.id).collect();
    let want: Vec<i64> = exact.iter().map(|(_, i)| *i as i64 + 1).collect();
    assert_eq!(ids, want);
    for (hit, (d, _)) in hits.iter().zip(exact) {
        let got = hit.distance.unwrap();
        assert!(close(got, *d), "distance {got} vs exact {d}");
        assert_eq!(hit.score, got);
    }
}

/// Unfiltered and pre-filtered searches equal exact neighbours; a filter
/// with fewer matches than `k` returns them all; `max_distance` cuts.
#[tokio::test]
async fn exact_search_equals_neighbours_computed_in_rust() {
    let db = SearchDb::new().await;
    db.create::<Point>().await;
    let set = Clustered::generate(ROWS, 16, 12, 7);
    let repo = db.mongo.repo::<Point>();
    assert_eq!(repo.insert_many(&points(&set)).await.unwrap(), ROWS as u64);

    for q in 0..QUERIES {
        let query = set.query(q, 1000 + q as u64);
        let hits = repo
            .search_embedding(Vector::from(query.clone()), 10)
            .await
            .unwrap();
        assert_exact(&hits, &set.exact(&query, 10, |_| true));

        // 5 % of the rows match: still k hits, each the exact filtered neighbour.
        let bucket = (q % 20) as i32;
        let hits = repo
            .search_embedding(Vector::from(query.clone()), 10)
            .filter(Point::BUCKET.eq(bucket))
            .await
            .unwrap();
        assert_exact(&hits, &set.exact(&query, 10, |i| i % 20 == q % 20));
    }

    let query = set.query(0, 99);
    let few = repo
        .search_embedding(Vector::from(query.clone()), 10)
        .filter(Point::ID.le(3))
        .await
        .unwrap();
    assert_exact(&few, &set.exact(&query, 10, |i| i < 3));

    let exact = set.exact(&query, 10, |_| true);
    let max = exact[4].0;
    let within = repo
        .search_embedding(Vector::from(query), 10)
        .max_distance(max)
        .await
        .unwrap();
    assert_exact(&within, &exact[..5]);
    db.cleanup().await;
}

/// Pages of 7 after cursors equal one search of 60, including ties on the
/// distance (identical vectors), which the id orders.
#[tokio::test]
async fn keyset_pages_equal_a_single_search() {
    let db = SearchDb::new().await;
    db.create::<Point>().await;
    let set = Clustered::generate(300, 16, 4, 11);
    let mut rows = points(&set);
    for _ in 0..3 {
        rows.push(Point {
            id: 0,
            bucket: 0,
            embedding: rows[0].embedding.clone(),
        });
    }
    let repo = db.mongo.repo::<Point>();
    repo.insert_many(&rows).await.unwrap();

    let query = Vector::from(set.vectors[0].clone());
    let single = repo.search_embedding(query.clone(), 60).await.unwrap();
    // Identity ids: the three copies got ids after the 300 others.
    let first: Vec<(i64, Option<f64>)> = single[..4]
        .iter()
        .map(|h| (h.entity.id, h.distance))
        .collect();
    let tied = [1, 301, 302, 303].map(|id| (id, Some(0.0)));
    assert_eq!(first, tied, "ties ordered by id");
    let mut paged = Vec::new();
    let mut cursor = None;
    while paged.len() < 60 {
        let page = repo
            .search_embedding(query.clone(), 7)
            .page_after(cursor)
            .await
            .unwrap();
        paged.extend(page.items);
        cursor = page.next;
        assert!(cursor.is_some(), "every page of this search is full");
    }
    let key = |h: &Scored<Point>| (h.entity.id, h.score);
    let paged: Vec<_> = paged[..60].iter().map(key).collect();
    assert_eq!(paged, single.iter().map(key).collect::<Vec<_>>());

    let tampered = repo
        .search_embedding(query, 7)
        .page_after(Some(Cursor::parse("[\"x\", 1]")))
        .await
        .unwrap_err();
    assert!(matches!(tampered, Error::InvalidInput { .. }), "{tampered}");
    db.cleanup().await;
}

fn dense(rng: &mut Rng, dims: usize) -> Vec<f32> {
    (0..dims).map(|_| rng.unit()).collect()
}

/// A sparse vector with at least one non-zero element.
fn sparse(rng: &mut Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..12)
        .map(|_| if rng.below(3) == 0 { rng.unit() } else { 0.0 })
        .collect();
    v[rng.below(12)] = 0.5;
    v
}

/// Bits with at least one set (jaccard has no distance from all zeros).
fn bits(rng: &mut Rng) -> Vec<bool> {
    let mut b: Vec<bool> = (0..10).map(|_| rng.next_u64() & 1 == 1).collect();
    b[rng.below(10)] = true;
    b
}

/// The source vectors of one `Kinds` row, kept for computing distances here.
struct Source {
    dense: [Vec<f32>; 4],
    sparse: [Vec<f32>; 4],
    bits: [Vec<bool>; 2],
}

fn source(rng: &mut Rng) -> Source {
    Source {
        dense: std::array::from_fn(|_| dense(rng, 6)),
        sparse: std::array::from_fn(|_| sparse(rng)),
        bits: std::array::from_fn(|_| bits(rng)),
    }
}

fn kinds(id: i64, s: &Source) -> Kinds {
    Kinds {
        id,
        cos: Vector::from(s.dense[0].clone()),
        ip: Vector::from(s.dense[1].clone()),
        manhattan: Vector::from(s.dense[2].clone()),
        half: HalfVector::from_f32_slice(&s.dense[3]),
        sparse_cos: SparseVector::from_dense(&s.sparse[0]),
        sparse_l2: SparseVector::from_dense(&s.sparse[1]),
        sparse_l1: SparseVector::from_dense(&s.sparse[2]),
        sparse_ip: SparseVector::from_dense(&s.sparse[3]),
        bits: Bit::new(&s.bits[0]),
        jac: Bit::new(&s.bits[1]),
        maybe: (id % 3 != 0).then(|| Vector::from(vec![id as f32, 1.0, 0.0])),
    }
}

/// Hits' `(distance, id)` equal the exact list.
fn check_kind(name: &str, hits: &[Scored<Kinds>], exact: &[(f64, i64)]) {
    let got: Vec<i64> = hits.iter().map(|h| h.entity.id).collect();
    let want: Vec<i64> = exact.iter().map(|(_, i)| *i).collect();
    assert_eq!(got, want, "{name}: ids");
    for (hit, (d, _)) in hits.iter().zip(exact) {
        let got = hit.distance.unwrap();
        assert!(close(got, *d), "{name}: distance {got} vs exact {d}");
    }
}

/// Every vector kind round-trips through BSON, and every distance (cosine,
/// inner product, l1, l2 on dense, half and sparse vectors; hamming and
/// jaccard on bits) equals the one computed here.
#[tokio::test]
async fn every_distance_and_vector_kind_equals_rust() {
    let db = SearchDb::new().await;
    db.create::<Kinds>().await;
    let repo = db.mongo.repo::<Kinds>();
    let mut rng = Rng::new(5);
    let sources: Vec<Source> = (0..120).map(|_| source(&mut rng)).collect();
    let rows: Vec<Kinds> = (1..).zip(&sources).map(|(i, s)| kinds(i, s)).collect();
    repo.insert(&rows[0]).await.unwrap();
    repo.insert_many(&rows[1..]).await.unwrap();
    for row in &rows[..10] {
        assert_eq!(repo.get(&row.id).await.unwrap().as_ref(), Some(row));
    }

    let q = source(&mut rng);
    let half = |v: &[f32]| -> Vec<f32> {
        let h = HalfVector::from_f32_slice(v);
        h.as_slice().iter().map(|x| x.to_f32()).collect()
    };
    let exact = |f: &dyn Fn(&Source) -> f64| -> Vec<(f64, i64)> {
        nearest((1..).zip(&sources).map(|(i, s)| (f(s), i)).collect(), 25)
    };
    let k = 25;
    let hits = repo.search_cos(Vector::from(q.dense[0].clone()), k);
    check_kind(
        "cosine",
        &hits.await.unwrap(),
        &exact(&|s| cosine(&s.dense[0], &q.dense[0])),
    );
    let hits = repo.search_ip(Vector::from(q.dense[1].clone()), k);
    check_kind(
        "ip",
        &hits.await.unwrap(),
        &exact(&|s| negative_dot(&s.dense[1], &q.dense[1])),
    );
    let hits = repo.search_manhattan(Vector::from(q.dense[2].clone()), k);
    check_kind(
        "l1",
        &hits.await.unwrap(),
        &exact(&|s| l1(&s.dense[2], &q.dense[2])),
    );
    let hits = repo.search_half(HalfVector::from_f32_slice(&q.dense[3]), k);
    let want = exact(&|s| l2(&half(&s.dense[3]), &half(&q.dense[3])));
    check_kind("half l2", &hits.await.unwrap(), &want);

    let sp = |i: usize| SparseVector::from_dense(&q.sparse[i]);
    let hits = repo.search_sparse_cos(sp(0), k).await.unwrap();
    check_kind(
        "sparse cosine",
        &hits,
        &exact(&|s| cosine(&s.sparse[0], &q.sparse[0])),
    );
    let hits = repo.search_sparse_l2(sp(1), k).await.unwrap();
    check_kind(
        "sparse l2",
        &hits,
        &exact(&|s| l2(&s.sparse[1], &q.sparse[1])),
    );
    let hits = repo.search_sparse_l1(sp(2), k).await.unwrap();
    check_kind(
        "sparse l1",
        &hits,
        &exact(&|s| l1(&s.sparse[2], &q.sparse[2])),
    );
    let hits = repo.search_sparse_ip(sp(3), k).await.unwrap();
    let want = exact(&|s| negative_dot(&s.sparse[3], &q.sparse[3]));
    check_kind("sparse ip", &hits, &want);

    let hits = repo.search_bits(Bit::new(&q.bits[0]), k).await.unwrap();
    check_kind(
        "hamming",
        &hits,
        &exact(&|s| hamming(&s.bits[0], &q.bits[0])),
    );
    let hits = repo.search_jac(Bit::new(&q.bits[1]), k).await.unwrap();
    check_kind(
        "jaccard",
        &hits,
        &exact(&|s| jaccard(&s.bits[1], &q.bits[1])),
    );

    let maybe = repo.search_maybe(Vector::from(vec![0.0, 1.0, 0.0]), 200);
    assert_eq!(
        maybe.await.unwrap().len(),
        80,
        "rows with a null vector are never hits"
    );
    db.cleanup().await;
}

fn expect_invalid(outcome: Result<impl std::fmt::Debug>, field: &str, reason: &str) {
    match outcome.unwrap_err() {
        Error::InvalidInput {
            field: f,
            reason: r,
            ..
        } => {
            assert_eq!(f, field, "{r}");
            assert!(r.contains(reason), "{r} should say {reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// Wrong dimensions, NaN, infinities, empty and all-zero vectors are refused
/// with the field named: on writes (nothing stored), and on searches even
/// against a closed client, which proves nothing was sent.
#[tokio::test]
async fn every_bad_vector_is_rejected_before_sending() {
    let db = SearchDb::new().await;
    db.create::<Kinds>().await;
    let repo = db.mongo.repo::<Kinds>();
    let good = kinds(1, &source(&mut Rng::new(3)));
    let cases: Vec<(Kinds, &str, &str)> = vec![
        (
            Kinds {
                cos: Vector::from(vec![1.0; 5]),
                ..good.clone()
            },
            "cos",
            "has 5 dimensions; expected 6",
        ),
        (
            Kinds {
                cos: Vector::from(vec![]),
                ..good.clone()
            },
            "cos",
            "is empty; expected 6",
        ),
        (
            Kinds {
                cos: Vector::from(vec![0.0; 6]),
                ..good.clone()
            },
            "cos",
            "all zeros",
        ),
        (
            Kinds {
                ip: Vector::from(vec![1.0, f32::NAN, 0.0, 0.0, 0.0, 0.0]),
                ..good.clone()
            },
            "ip",
            "NaN at index 1",
        ),
        (
            Kinds {
                half: HalfVector::from_f32_slice(&[1e6, 0.0, 0.0, 0.0, 0.0, 0.0]),
                ..good.clone()
            },
            "half",
            "inf at index 0",
        ),
        (
            Kinds {
                sparse_l2: SparseVector::from_dense(&[1.0; 13]),
                ..good.clone()
            },
            "sparse_l2",
            "has 13 dimensions; expected 12",
        ),
        (
            Kinds {
                bits: Bit::new(&[true; 9]),
                ..good.clone()
            },
            "bits",
            "has 9 dimensions; expected 10",
        ),
        (
            Kinds {
                maybe: Some(Vector::from(vec![f32::NEG_INFINITY, 0.0, 0.0])),
                ..good.clone()
            },
            "maybe",
            "-inf at index 0",
        ),
    ];
    for (row, field, reason) in cases {
        expect_invalid(repo.insert(&row).await, field, reason);
        expect_invalid(repo.upsert(&row).await, field, reason);
        expect_invalid(repo.update(&row).await, field, reason);
        expect_invalid(repo.insert_many(&[good.clone(), row]).await, field, reason);
    }
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        0,
        "nothing was written"
    );

    db.mongo.close().await;
    let closed: MongoRepository<Kinds> = db.mongo.repo();
    let search = closed.search_cos(Vector::from(vec![1.0; 5]), 3).await;
    expect_invalid(search, "cos", "query vector has 5 dimensions; expected 6");
    let search = closed.search_cos(Vector::from(vec![]), 3).await;
    expect_invalid(search, "cos", "query vector is empty");
    let search = closed.search_ip(Vector::from(vec![f32::NAN; 6]), 3).await;
    expect_invalid(search, "ip", "NaN at index 0");
    let search = closed.search_bits(Bit::new(&[true; 9]), 3).await;
    expect_invalid(search, "bits", "has 9 dimensions");
    let search = closed.search_cos(Vector::from(vec![1.0; 6]), 0).await;
    expect_invalid(search, "k", "between 1 and");
    let reached = closed.search_cos(Vector::from(vec![1.0; 6]), 3).await;
    assert!(
        !matches!(reached, Err(Error::InvalidInput { .. }) | Ok(_)),
        "{reached:?}"
    );
    let config = reposmith::MongoConfig::new(reposmith_tests::mongodb_url())
        .database(db.mongo.database().name());
    let cleanup = reposmith::MongoBackend::connect(&config).await.unwrap();
    cleanup.database().drop().await.unwrap();
    cleanup.close().await;
}

/// Full-text and hybrid searches are refused with a typed error naming why;
/// vector searches on the same entity work.
#[tokio::test]
async fn text_and_hybrid_search_are_refused_with_a_typed_error() {
    let db = SearchDb::new().await;
    db.create::<Article>().await;
    let repo = db.mongo.repo::<Article>();
    let article = Article {
        id: 1,
        body: "vector search on documents".into(),
        embedding: Vector::from(vec![1.0, 0.0, 0.0]),
    };
    repo.insert(&article).await.unwrap();
    expect_invalid(
        repo.search_text("vector", 5).await,
        "text",
        "not supported on MongoDB",
    );
    let hybrid = repo.search_hybrid("vector", Vector::from(vec![1.0, 0.0, 0.0]), 5);
    expect_invalid(hybrid.await, "text", "not supported on MongoDB");
    let by_vector = repo.search_embedding(Vector::from(vec![1.0, 0.0, 0.0]), 5);
    let hits = by_vector.await.unwrap();
    assert_eq!(hits.len(), 1);
    assert!(close(hits[0].distance.unwrap(), 0.0));
    db.cleanup().await;
}

/// The TTL index of the `#[repo(ttl)]` column, from its listIndexes entry.
async fn ttl_entry(db: &SearchDb) -> Option<Document> {
    let reply = db
        .mongo
        .database()
        .run_command(doc! { "listIndexes": "traces" })
        .await
        .unwrap();
    let batch = reply
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    batch
        .iter()
        .filter_map(|i| i.as_document().cloned())
        .find(|i| {
            i.get_document("key")
                .is_ok_and(|k| k.contains_key("recorded_at"))
        })
}

/// `#[repo(ttl = "30d")]` creates a TTL index with `expireAfterSeconds`
/// 2,592,000; creating again is a no-op, and an index left with another
/// lifetime is updated to the schema's.
#[tokio::test]
async fn ttl_index_is_created_with_the_schema_lifetime() {
    let db = SearchDb::new().await;
    db.create::<Trace>().await;
    let entry = ttl_entry(&db).await.expect("a TTL index");
    assert_eq!(entry.get_str("name").unwrap(), "traces_recorded_at_ttl");
    let seconds = |e: &Document| {
        e.get("expireAfterSeconds")
            .and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)))
    };
    assert_eq!(seconds(&entry), Some(30 * 24 * 3600));
    db.create::<Trace>().await;

    let command = doc! { "collMod": "traces", "index": { "name": "traces_recorded_at_ttl", "expireAfterSeconds": 60 } };
    db.mongo.database().run_command(command).await.unwrap();
    assert_eq!(seconds(&ttl_entry(&db).await.unwrap()), Some(60));
    db.create::<Trace>().await;
    assert_eq!(
        seconds(&ttl_entry(&db).await.unwrap()),
        Some(30 * 24 * 3600)
    );
    db.cleanup().await;
}

/// A search inside a unit of work runs in its transaction: it sees the
/// unit's uncommitted insert, which a search outside does not; after a
/// rollback the row is gone for both.
#[tokio::test]
async fn search_in_a_unit_of_work_sees_its_uncommitted_writes() {
    let db = SearchDb::new().await;
    db.create::<Article>().await;
    let outside = db.mongo.repo::<Article>();
    let near = || Vector::from(vec![0.0, 1.0, 0.0]);
    let article = |id, embedding: Vec<f32>| Article {
        id,
        body: format!("article {id}"),
        embedding: Vector::from(embedding),
    };
    outside
        .insert(&article(0, vec![1.0, 0.0, 0.0]))
        .await
        .unwrap();
    let unit = db.mongo.begin().await.unwrap();
    let inside = unit.repo::<Article>();
    let added = inside
        .insert(&article(0, vec![0.0, 1.0, 0.0]))
        .await
        .unwrap();
    let hits = inside.search_embedding(near(), 1).await.unwrap();
    assert_eq!(hits[0].entity.id, added.id);
    assert!(close(hits[0].distance.unwrap(), 0.0));
    let hits = outside.search_embedding(near(), 5).await.unwrap();
    assert_eq!(hits.len(), 1, "the unit's insert is not visible outside it");
    unit.rollback().await.unwrap();
    assert_eq!(outside.search_embedding(near(), 5).await.unwrap().len(), 1);
    db.cleanup().await;
}
