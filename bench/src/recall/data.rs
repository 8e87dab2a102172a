//! The benchmark's data: seeded isotropic (clustered) Gaussian vectors, and
//! the table loaded without its index, then indexed.

use std::time::{Duration, Instant};

use reposmith::postgres::create_table_sql;
use reposmith::prelude::*;
use reposmith::{HalfVector, IndexMethod};
use reposmith_postgres::{PgBackend, index_sql};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{DIMS, Item, LOAD_BATCH, Options};
use crate::Result;

/// Seeded vectors: isotropic Gaussian, or isotropic Gaussian blobs around
/// `clusters` Gaussian centres whose coordinates spread `spread` times as far.
pub(super) fn data(opts: &Options, n: usize, seed: u64) -> Vec<HalfVector> {
    let mut rng = Gaussian(seed);
    let mut centres = Gaussian(opts.seed ^ 0xC3);
    let centres: Vec<Vec<f32>> = (0..opts.clusters)
        .map(|_| {
            (0..DIMS)
                .map(|_| (opts.spread * centres.next()) as f32)
                .collect()
        })
        .collect();
    (0..n)
        .map(|_| {
            let centre = match centres.len() {
                0 => None,
                c => Some(&centres[(rng.uniform() * c as f64) as usize % c]),
            };
            let v: Vec<f32> = (0..DIMS)
                .map(|d| rng.next() as f32 + centre.map_or(0.0, |c| c[d]))
                .collect();
            HalfVector::from_f32_slice(&v)
        })
        .collect()
}

/// SplitMix64 with Box-Muller: seeded standard normal draws, no crate.
pub(super) struct Gaussian(pub(super) u64);

impl Gaussian {
    pub(super) fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(super) fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Creates the table without its HNSW index, loads it, builds the index;
/// returns the load and build times.
pub(super) async fn setup(pg: &PgBackend, opts: &Options) -> Result<(Duration, Duration)> {
    let schema = Item::SCHEMA;
    let hnsw: Vec<String> = schema
        .indexes
        .iter()
        .filter(|i| matches!(i.method, IndexMethod::Hnsw { .. }))
        .map(|i| index_sql(schema, i))
        .collect();
    sqlx::query("DROP TABLE IF EXISTS bench_recall")
        .execute(pg.pool())
        .await?;
    for statement in create_table_sql(schema)
        .into_iter()
        .filter(|s| !hnsw.contains(s))
    {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(pg.pool())
            .await?;
    }
    let repo = pg.repo::<Item>();
    let mut loaded = Duration::ZERO;
    let mut done = 0;
    while done < opts.rows {
        let n = LOAD_BATCH.min(opts.rows - done);
        let rows: Vec<Item> = data(opts, n, opts.seed.wrapping_add(done as u64))
            .into_iter()
            .map(|embedding| Item { id: 0, embedding })
            .collect();
        let started = Instant::now();
        repo.insert_many(&rows).await?;
        loaded += started.elapsed();
        done += n;
    }
    eprintln!("  load {} rows: {:.1} s", opts.rows, loaded.as_secs_f64());
    let mut session = PgConnection::connect(&std::env::var("DATABASE_URL")?).await?;
    sqlx::raw_sql("SET maintenance_work_mem = '1GB'")
        .execute(&mut session)
        .await?;
    let started = Instant::now();
    for statement in hnsw {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut session)
            .await?;
    }
    let built = started.elapsed();
    sqlx::raw_sql("ANALYZE bench_recall")
        .execute(&mut session)
        .await?;
    session.close().await?;
    eprintln!("  hnsw build: {:.1} s", built.as_secs_f64());
    Ok((loaded, built))
}
