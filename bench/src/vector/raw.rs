//! The hand-written sqlx side of the vector search: the statement text
//! reposmith sends (checked against the server at start-up, see
//! [`super::check`]), the same transaction and `set_config` pattern, the
//! query vector bound with pgvector's sqlx type and rows mapped by position.

use reposmith::Vector;
use sqlx::postgres::PgRow;
use sqlx::{Acquire, AssertSqlSafe, PgPool, Postgres, Row};

use super::{Case, Doc, K};
use crate::Result;

/// reposmith's vector search without a filter: the filter renders as `(TRUE)`.
pub(crate) const UNFILTERED: &str = "WITH \"__hits\" AS MATERIALIZED (SELECT \"id\", \"shard\", \
     \"embedding\", (\"embedding\" <=> $1) AS \"__distance\" FROM \"bench_vectors\" \
     WHERE (TRUE) AND \"embedding\" IS NOT NULL ORDER BY \"__distance\" LIMIT $2) \
     SELECT * FROM \"__hits\" ORDER BY \"__distance\", \"id\"";

/// The same with `shard = $1`: the filter's values come first.
pub(crate) const FILTERED: &str = "WITH \"__hits\" AS MATERIALIZED (SELECT \"id\", \"shard\", \
     \"embedding\", (\"embedding\" <=> $2) AS \"__distance\" FROM \"bench_vectors\" \
     WHERE (\"shard\" = $1) AND \"embedding\" IS NOT NULL ORDER BY \"__distance\" LIMIT $3) \
     SELECT * FROM \"__hits\" ORDER BY \"__distance\", \"id\"";

/// How reposmith scopes `ef_search` to the transaction (name and value bound).
const SET_CONFIG: &str = "SELECT set_config($1, $2, true)";

/// One hit: the row and its distance.
#[derive(Debug)]
pub(crate) struct Hit {
    pub(crate) doc: Doc,
    pub(crate) distance: f64,
}

/// `BEGIN`; `set_config('hnsw.ef_search', ef, true)`; the search; `COMMIT`,
/// on whatever `db` is: `&PgPool` (a pooled connection per search) or a
/// held `&mut PgConnection`.
pub(crate) async fn search<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    case: Case,
    vector: &Vector,
    shard: i32,
) -> Result<Vec<Hit>> {
    let mut tx = db.begin().await?;
    sqlx::query(SET_CONFIG)
        .bind("hnsw.ef_search")
        .bind(case.ef.to_string())
        .execute(&mut *tx)
        .await?;
    let query = match case.filtered {
        true => sqlx::query(FILTERED).bind(shard),
        false => sqlx::query(UNFILTERED),
    };
    let rows = query
        .bind(vector)
        .bind(i64::from(K))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.iter().map(hit).collect::<sqlx::Result<_>>()?)
}

/// The same search with one round trip fewer: `BEGIN` and `SET LOCAL` go in
/// one simple-protocol message (the value is a number, so it can be written
/// into the text), then the search, then `COMMIT`.
pub(crate) async fn search_batched(
    pool: &PgPool,
    case: Case,
    vector: &Vector,
    shard: i32,
) -> Result<Vec<Hit>> {
    let mut conn = pool.acquire().await?;
    let open = format!("BEGIN; SET LOCAL hnsw.ef_search = {}", case.ef);
    sqlx::raw_sql(AssertSqlSafe(open))
        .execute(&mut *conn)
        .await?;
    let query = match case.filtered {
        true => sqlx::query(FILTERED).bind(shard),
        false => sqlx::query(UNFILTERED),
    };
    let rows = query
        .bind(vector)
        .bind(i64::from(K))
        .fetch_all(&mut *conn)
        .await?;
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
    Ok(rows.iter().map(hit).collect::<sqlx::Result<_>>()?)
}

fn hit(row: &PgRow) -> sqlx::Result<Hit> {
    Ok(Hit {
        doc: Doc {
            id: row.try_get(0)?,
            shard: row.try_get(1)?,
            embedding: row.try_get(2)?,
        },
        distance: row.try_get(3)?,
    })
}

/// The scan node of the plan the server picks for `case` (EXPLAIN, same
/// binds, same `ef_search`): an HNSW index scan, or a sequential scan.
pub(crate) async fn plan(pool: &PgPool, case: Case, vector: &Vector, shard: i32) -> Result<String> {
    let mut tx = pool.begin().await?;
    sqlx::query(SET_CONFIG)
        .bind("hnsw.ef_search")
        .bind(case.ef.to_string())
        .execute(&mut *tx)
        .await?;
    let sql = match case.filtered {
        true => format!("EXPLAIN (COSTS OFF) {FILTERED}"),
        false => format!("EXPLAIN (COSTS OFF) {UNFILTERED}"),
    };
    let query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
    let query = match case.filtered {
        true => query.bind(shard),
        false => query,
    };
    let lines = query
        .bind(vector)
        .bind(i64::from(K))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let scan = lines
        .iter()
        .find(|l| l.contains("Scan"))
        .map_or("?", |l| l.trim());
    Ok(scan.trim_start_matches("-> ").to_owned())
}
