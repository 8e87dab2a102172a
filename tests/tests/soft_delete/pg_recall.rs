//! A filtered HNSW search with soft-deleted rows still in the index: 20,000
//! seeded 16-dimensional points (6,000 unless `REPOSMITH_HEAVY=1`; at either
//! size the deleted rows are spread through the graph a scan walks), 30%
//! deleted, then searched with the row
//! scope alone and with the scope plus a caller's filter. pgvector's
//! iterative index scans (on by default, `PgConfig::iterative_scan`) keep
//! walking the graph past deleted rows, so every search returns `k` rows,
//! and recall@k against exact neighbours among the live (and matching)
//! rows, computed here in Rust, stays at or above 0.9.

use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::prelude::*;
use reposmith::{PgBackend, Vector};
use reposmith_tests::{database_url, unique_name};

#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "soft_points", backend = "postgres")]
struct Point {
    #[repo(id(assigned))]
    id: i64,
    /// `id % 100`: below 30 deleted; the caller's filter keeps below 80.
    bucket: i32,
    #[repo(vector(dims = 16, distance = "l2", index = "hnsw"))]
    embedding: Vector,
    #[repo(soft_delete)]
    deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Points stored: 20,000 under `REPOSMITH_HEAVY=1`, else 6,000.
fn rows() -> usize {
    if reposmith_tests::heavy() {
        20_000
    } else {
        6_000
    }
}
const DIMS: usize = 16;
const QUERIES: usize = 30;
const K: u32 = 10;

/// SplitMix64 in [-1, 1): seeded vectors without a crate.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vector(&mut self) -> Vec<f32> {
        (0..DIMS).map(|_| self.unit()).collect()
    }
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The ids of the `k` nearest of `vectors` (id = position + 1) that `keep` accepts.
fn exact(vectors: &[Vec<f32>], query: &[f32], keep: impl Fn(i64) -> bool) -> Vec<i64> {
    let mut scored: Vec<(f32, i64)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (l2(v, query), i as i64 + 1))
        .filter(|(_, id)| keep(*id))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.iter().take(K as usize).map(|(_, id)| *id).collect()
}

async fn run(backend: &PgBackend, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(backend.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn filtered_hnsw_search_over_soft_deleted_rows_keeps_k_and_recall() {
    let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
        .await
        .unwrap();
    let namespace = unique_name("softrecall");
    run(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
    let url = reposmith_tests::with_search_path(&database_url(), &format!("{namespace},public"));
    let pg = PgBackend::connect(&reposmith_tests::pg_config(url))
        .await
        .unwrap();
    pg.create_tables::<Point>().await.unwrap();
    let mut rng = Rng(29);
    let vectors: Vec<Vec<f32>> = (0..rows()).map(|_| rng.vector()).collect();
    let points: Vec<Point> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            id: i as i64 + 1,
            bucket: ((i + 1) % 100) as i32,
            embedding: Vector::from(v.clone()),
            deleted_at: None,
        })
        .collect();
    let points_repo = pg.repo::<Point>();
    // COPY, then one index build: walking 20,000 rows into the HNSW graph
    // one insert at a time took over the 30 s statement deadline on a loaded
    // 2-core machine.
    let report = points_repo.bulk_load(&points).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    let deleted = points_repo
        .delete_where(Point::BUCKET.lt(30))
        .await
        .unwrap();
    assert_eq!(deleted, (rows() * 30 / 100) as u64);
    run(&admin, &format!("ANALYZE \"{namespace}\".soft_points")).await;
    let live = |id: i64| id % 100 >= 30;
    let (mut scoped, mut filtered) = (0.0, 0.0);
    for _ in 0..QUERIES {
        let query = rng.vector();
        let hits = points_repo
            .search_embedding(Vector::from(query.clone()), K)
            .await
            .unwrap();
        assert_eq!(
            hits.len(),
            K as usize,
            "k rows despite deleted rows in the index"
        );
        assert!(hits.iter().all(|h| h.entity.deleted_at.is_none()));
        scoped += recall(&hits, &exact(&vectors, &query, live));
        let hits = points_repo
            .search_embedding(Vector::from(query.clone()), K)
            .filter(Point::BUCKET.lt(80))
            .await
            .unwrap();
        assert_eq!(hits.len(), K as usize, "k rows under scope and filter");
        let keep = |id: i64| live(id) && id % 100 < 80;
        filtered += recall(&hits, &exact(&vectors, &query, keep));
    }
    let (scoped, filtered) = (scoped / QUERIES as f64, filtered / QUERIES as f64);
    assert!(scoped >= 0.9, "recall@{K} over live rows: {scoped}");
    assert!(
        filtered >= 0.9,
        "recall@{K} over live, matching rows: {filtered}"
    );
    pg.close().await;
    run(&admin, &format!("DROP SCHEMA \"{namespace}\" CASCADE")).await;
    admin.close().await;
}

fn recall(hits: &[Scored<Point>], truth: &[i64]) -> f64 {
    let found = hits.iter().filter(|h| truth.contains(&h.entity.id)).count();
    found as f64 / truth.len() as f64
}
