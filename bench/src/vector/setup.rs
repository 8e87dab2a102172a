//! The vector table: created from the derive's DDL without its HNSW index,
//! loaded with `insert_many` (binary COPY), then indexed with the derive's
//! own `CREATE INDEX`, timed.

use std::time::{Duration, Instant};

use reposmith::postgres::create_table_sql;
use reposmith::{Entity, IndexMethod, PgRepository, Repository, Vector};
use reposmith_postgres::index_sql;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use super::data::{Clustered, Exact, SplitMix};
use super::{DIMS, Doc, SHARDS};
use crate::Result;

/// Memory for the index build, set on the building session only: enough to
/// hold the whole graph (about 200 MB for 100k x 384), so the build never
/// falls back to its slower on-disk phase.
pub(crate) const MAINTENANCE_WORK_MEM: &str = "512MB";
/// Rows per `insert_many` call: each call is one COPY, and one COPY of every
/// row would run close to reposmith's 30 s statement timeout on this machine.
const LOAD_BATCH: usize = 25_000;

/// The derive's statements: the table's, and the HNSW index's apart.
fn ddl() -> (Vec<String>, Vec<String>) {
    let schema = Doc::SCHEMA;
    let hnsw: Vec<String> = schema
        .indexes
        .iter()
        .filter(|i| matches!(i.method, IndexMethod::Hnsw { .. }))
        .map(|i| index_sql(schema, i))
        .collect();
    let table = create_table_sql(schema)
        .into_iter()
        .filter(|s| !hnsw.contains(s))
        .collect();
    (table, hnsw)
}

/// Drops and recreates the table without its HNSW index.
pub(crate) async fn create(raw: &PgPool) -> Result<()> {
    sqlx::query("DROP TABLE IF EXISTS bench_vectors")
        .execute(raw)
        .await?;
    for statement in ddl().0 {
        sqlx::raw_sql(AssertSqlSafe(statement)).execute(raw).await?;
    }
    Ok(())
}

/// Generates `rows` vectors in batches, inserts each batch with
/// `insert_many` and keeps only their normalised copies for exact search.
/// Returns those and the time spent inserting (generation excluded).
pub(crate) async fn load(
    repo: &PgRepository<Doc>,
    set: &Clustered,
    rows: usize,
    rng: &mut SplitMix,
) -> Result<(Exact, Duration)> {
    let mut exact = Exact::with_capacity(rows, DIMS);
    let mut spent = Duration::ZERO;
    let mut done = 0;
    while done < rows {
        let n = LOAD_BATCH.min(rows - done);
        let batch: Vec<Doc> = (done..done + n)
            .map(|i| Doc {
                id: 0,
                shard: shard_of(i),
                embedding: Vector::from(set.point(rng)),
            })
            .collect();
        exact.extend(batch.iter().map(|d| d.embedding.as_slice()));
        let started = Instant::now();
        let stored = repo.insert_many(&batch).await?;
        spent += started.elapsed();
        if stored != n as u64 {
            return Err(format!("insert_many stored {stored} of {n} rows").into());
        }
        done += n;
    }
    Ok((exact, spent))
}

/// The shard of the row at `position`: `id % 100`, ids being `position + 1`.
pub(crate) fn shard_of(position: usize) -> i32 {
    i32::try_from((position + 1) % SHARDS).unwrap_or(0)
}

/// Checks that identity ids are `position + 1` and shards `id % 100`, as
/// recall assumes.
pub(crate) async fn check_ids(raw: &PgPool, rows: usize) -> Result<()> {
    let (count, min, max, wrong): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), min(id), max(id), count(*) FILTER (WHERE shard <> id % 100) \
         FROM bench_vectors",
    )
    .fetch_one(raw)
    .await?;
    if (count, min, max, wrong) != (rows as i64, 1, rows as i64, 0) {
        let got = format!("{count} rows, ids {min}..{max}, {wrong} wrong shards");
        return Err(format!("bench_vectors is not ids 1..{rows}: {got}").into());
    }
    Ok(())
}

/// Runs the derive's `CREATE INDEX ... USING hnsw` on a session of its own
/// (so `maintenance_work_mem` stays there), then `ANALYZE`; returns the
/// build's wall time and the statement.
pub(crate) async fn build_index() -> Result<(Duration, String)> {
    let url = std::env::var("DATABASE_URL")?;
    let mut session = PgConnection::connect(&url).await?;
    let set = format!("SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'");
    sqlx::raw_sql(AssertSqlSafe(set))
        .execute(&mut session)
        .await?;
    let statement = ddl().1.into_iter().next().ok_or("Doc has no HNSW index")?;
    let started = Instant::now();
    sqlx::raw_sql(AssertSqlSafe(statement.clone()))
        .execute(&mut session)
        .await?;
    let took = started.elapsed();
    sqlx::raw_sql("ANALYZE bench_vectors")
        .execute(&mut session)
        .await?;
    session.close().await?;
    Ok((took, statement))
}

/// The server's settings that shape the build and the searches.
pub(crate) async fn settings(raw: &PgPool) -> Result<String> {
    let names = [
        "shared_buffers",
        "max_parallel_maintenance_workers",
        "hnsw.iterative_scan",
        "hnsw.max_scan_tuples",
    ];
    let mut out = Vec::new();
    for name in names {
        // Missing until pgvector is loaded in the session: then its default.
        let value: Option<String> = sqlx::query_scalar("SELECT current_setting($1, true)")
            .bind(name)
            .fetch_one(raw)
            .await?;
        let value = value.unwrap_or_else(|| "(default)".to_owned());
        out.push(format!("{name}={value}"));
    }
    Ok(out.join(", "))
}
