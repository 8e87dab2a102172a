//! The exact re-run of a sampled search, and `EXPLAIN` of both paths.
//!
//! The re-run is the *same statement* the search sent (same SQL text, same
//! filter, `k`, vector and `max_distance`), in a read-only transaction of
//! its own with `SET LOCAL enable_indexscan = off`: pgvector's HNSW and
//! IVFFlat indexes serve only index scans (no bitmap scans), so the planner
//! falls back to a sequential scan with a top-k sort, which is exact. A
//! btree may still serve the filter through a bitmap scan, which is exact
//! too. `max_parallel_workers_per_gather = 0` keeps each re-run to one
//! server process, so `concurrency` bounds the CPU the monitor takes, and
//! `statement_timeout` bounds each re-run.
//!
//! Every exact query goes through [`exact_connection`]: today it takes a
//! connection from the repositories' pool on the primary; the replica
//! router (a later issue) redirects the monitor to a replica by changing
//! that one function.

use std::time::Duration;

use reposmith_core::search::SearchQuery;
use reposmith_core::{Entity, EntitySchema, Error, Result};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::measure::Hit;
use crate::bind::decode_row;
use crate::pool::PooledConnection;
use crate::search_sql::search_sql;
use crate::{PgBackend, PgRepository};

/// Slack past the server's `statement_timeout` before the client gives up.
const CLIENT_SLACK: Duration = Duration::from_secs(2);

/// The session settings of an exact re-run, after `BEGIN`.
fn exact_settings(timeout: Duration) -> String {
    format!(
        "SET LOCAL enable_indexscan = off; SET LOCAL max_parallel_workers_per_gather = 0; \
         SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    )
}

/// Where exact re-runs run. The one place a replica router changes.
pub(crate) async fn exact_connection(backend: &PgBackend) -> Result<PooledConnection> {
    backend.acquire().await
}

/// The exact hits of `query` (ids and distances, closest first).
pub(crate) async fn exact_hits<E: Entity>(
    backend: &PgBackend,
    query: &SearchQuery<E>,
    timeout: Duration,
) -> Result<Vec<Hit>> {
    let built = search_sql(query, None)?;
    let rows = exact_rows(backend, &built.sql, built.values, timeout).await?;
    rows.iter().map(|row| hit(E::SCHEMA, row)).collect()
}

/// Runs `sql` exactly on a connection from [`exact_connection`], bounded by
/// `timeout` on the server and a little more on the client.
async fn exact_rows(
    backend: &PgBackend,
    sql: &str,
    values: Vec<sea_query::Value>,
    timeout: Duration,
) -> Result<Vec<PgRow>> {
    let mut connection = exact_connection(backend).await?;
    // Behind a transaction pooler the session's settings (a search_path
    // among them) come with BEGIN; the exact ones below override them.
    let begin = match connection.transaction_settings() {
        Some(settings) => settings.begin("BEGIN READ ONLY"),
        None => "BEGIN READ ONLY".to_owned(),
    };
    let run = exact_in_transaction(&mut connection, &begin, sql, values, timeout);
    let outcome = match tokio::time::timeout(timeout + CLIENT_SLACK, run).await {
        Ok(outcome) => outcome,
        // Dropped unsettled: the pool closes the connection.
        Err(_) => {
            return Err(Error::Timeout {
                backend: reposmith_core::Backend::Postgres,
                operation: "an exact recall re-run",
                after: timeout + CLIENT_SLACK,
            });
        }
    };
    if outcome.is_err() {
        // The transaction may still be open: never pool the connection.
        connection.discard();
    }
    connection.settle(&outcome);
    outcome.map_err(|e| backend.map_error(e))
}

async fn exact_in_transaction(
    connection: &mut PgConnection,
    begin: &str,
    sql: &str,
    values: Vec<sea_query::Value>,
    timeout: Duration,
) -> sqlx::Result<Vec<PgRow>> {
    let open = format!("{begin}; {}", exact_settings(timeout));
    // Safe: fixed text, settings quoted by the pooler module, a number this function formats.
    sqlx::raw_sql(AssertSqlSafe(open))
        .execute(&mut *connection)
        .await?;
    let rows = crate::search::fetch(connection, sql, values).await?;
    sqlx::raw_sql("COMMIT").execute(&mut *connection).await?;
    Ok(rows)
}

/// The id and `__distance` of a vector search's row.
fn hit(schema: &'static EntitySchema, row: &PgRow) -> Result<Hit> {
    let mut values = decode_row(schema, row)?;
    let id = values.swap_remove(schema.id);
    let distance: Option<f64> = row
        .try_get(schema.columns.len())
        .map_err(|e| Error::Decode {
            entity: schema.entity,
            field: "score",
            source: reposmith_core::value::DecodeError {
                expected: "float8",
                found: e.to_string(),
            },
        })?;
    Ok((id, distance.unwrap_or(f64::NAN)))
}

impl<E: Entity> PgRepository<E> {
    /// The plan (`EXPLAIN (COSTS OFF)`, one line per row) of a vector search
    /// as this repository runs it, with its knobs (`ef_search`, `probes`,
    /// the tuned value) applied: shows whether the index serves it.
    pub async fn explain_search(&self, query: SearchQuery<E>) -> Result<String> {
        let (query, _) = self.prepare_search(query).await?;
        let built = search_sql(&query, None)?;
        let sql = format!("EXPLAIN (COSTS OFF) {}", built.sql);
        let knobs = self.knobs_of(&query);
        let rows = self.run_with_knobs(&knobs.set, &sql, built.values).await?;
        plan_text(&rows)
    }

    /// The plan of the recall monitor's exact re-run of `query`: a
    /// sequential scan, never the vector index.
    pub async fn explain_exact_search(&self, query: SearchQuery<E>) -> Result<String> {
        let (query, _) = self.prepare_search(query).await?;
        let backend = self.exec.backend();
        let built = search_sql(&query, None)?;
        let sql = format!("EXPLAIN (COSTS OFF) {}", built.sql);
        let timeout = backend.recall().config().timeout;
        let rows = exact_rows(backend, &sql, built.values, timeout).await?;
        plan_text(&rows)
    }
}

fn plan_text(rows: &[PgRow]) -> Result<String> {
    let lines = rows
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<sqlx::Result<Vec<_>>>()
        .map_err(|e| Error::Backend {
            backend: reposmith_core::Backend::Postgres,
            code: None,
            reason: format!("reading a plan: {e}"),
        })?;
    Ok(lines.join("\n"))
}
