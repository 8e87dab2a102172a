//! Statements whose shape depends on a filter or an order: find, pages,
//! count, exists, delete_where (a `DELETE`, or an `UPDATE` stamping the
//! soft-delete column). The filters arrive already restricted to the
//! repository's row scope (`PgRepository::scoped`). Rendered per call by sea-query; their text
//! depends only on the filter's *shape*, so equal shapes still share a
//! prepared statement.

use std::time::Duration;

use futures_util::TryStreamExt;
use reposmith_core::cache::{Cache, CachedRow, query_hash};
use reposmith_core::keyset::Keyset;
use reposmith_core::stamp::SoftDeleteStamp;
use reposmith_core::{Entity, EntitySchema, Filter, FindQuery, Result, Value};
use sea_query::{Expr, ExprTrait, PostgresQueryBuilder, Query, SelectStatement, UpdateStatement};
use sqlx::{AssertSqlSafe, Row};

use crate::PgRepository;
use crate::bind::{RowLayout, bind_all, decode_row_as};
use crate::error::RowDecode;
use crate::executor::Bounded;
use crate::keyset::{after, order_by};
use crate::render::{col, filter_expr, val};
use crate::repository::record_rows;
use crate::statements::{column_names, table};

/// The rows of `query`, at most `limit`, as schema-ordered values.
pub(crate) async fn fetch<E: Entity>(
    repo: &PgRepository<E>,
    query: FindQuery<E>,
    limit: Option<u64>,
) -> Result<Vec<Vec<Value>>> {
    let (sql, values) = limited(&query, limit)?;
    decoded_rows(repo, &sql, values, Ok).await
}

/// The rows of `query`, at most `limit`, as entities.
pub(crate) async fn fetch_entities<E: Entity>(
    repo: &PgRepository<E>,
    query: FindQuery<E>,
    limit: Option<u64>,
) -> Result<Vec<E>> {
    let (sql, values) = limited(&query, limit)?;
    decoded_rows(repo, &sql, values, E::from_values).await
}

/// [`fetch`] through the cache: the key is a hash of the rendered SQL and
/// its bound values, so equal queries share an entry and no user string
/// reaches a key.
pub(crate) async fn fetch_cached<E: Entity>(
    repo: &PgRepository<E>,
    cache: &Cache,
    ttl: Duration,
    query: FindQuery<E>,
    limit: Option<u64>,
) -> Result<Vec<Vec<Value>>> {
    let (sql, values) = limited(&query, limit)?;
    let params = format!("{:?}", values.0);
    let hash = query_hash([b"pg:find".as_slice(), sql.as_bytes(), params.as_bytes()]);
    let load = || async {
        let cached = |values| {
            Ok(CachedRow {
                values,
                ..CachedRow::default()
            })
        };
        decoded_rows(repo, &sql, values.clone(), cached)
            .bounded(&repo.exec)
            .await
    };
    let rows = cache.query::<E, _, _>(hash, ttl, load).await?;
    Ok(rows.into_iter().map(|row| row.values).collect())
}

/// The SQL and values of `query`'s `SELECT`, at most `limit` rows.
fn limited<E: Entity>(
    query: &FindQuery<E>,
    limit: Option<u64>,
) -> Result<(String, sea_query::Values)> {
    let mut select = select(query)?;
    if let Some(limit) = limit {
        select.limit(limit);
    }
    Ok(select.build(PostgresQueryBuilder))
}

/// Runs the read `sql` and turns each row's schema-ordered values into a
/// `T` with `make` as the row arrives, releasing its buffer at once:
/// collecting every row first and decoding afterwards kept a whole
/// result's buffers alive and cost a large read about as much again in
/// allocation. A decode failure leaves the row stream inside sqlx's error
/// type ([`RowDecode`]) and comes back as the same typed error.
async fn decoded_rows<E: Entity, T: Send + 'static>(
    repo: &PgRepository<E>,
    sql: &str,
    values: sea_query::Values,
    make: fn(Vec<Value>) -> Result<T>,
) -> Result<Vec<T>> {
    repo.check_bind(&values.0, &[])?;
    let sql: std::sync::Arc<str> = sql.into();
    let decoded = repo
        .exec
        .read(&repo.route, E::SCHEMA, |held| {
            // Safe: sea-query text over schema identifiers; values are bound, never in the text.
            let query = sqlx::query(AssertSqlSafe(std::sync::Arc::clone(&sql)));
            let query = bind_all(query, values.clone());
            Box::pin(async move {
                let mut rows = query.fetch(&mut **held);
                let (mut decoded, mut layout) = (Vec::new(), None);
                while let Some(row) = rows.try_next().await? {
                    let layout =
                        layout.get_or_insert_with(|| RowLayout::of(&row, E::SCHEMA.columns.len()));
                    let values = decode_row_as(E::SCHEMA, &row, layout).map_err(RowDecode::wrap)?;
                    decoded.push(make(values).map_err(RowDecode::wrap)?);
                }
                Ok(decoded)
            })
        })
        .await?;
    record_rows(decoded.len() as u64);
    Ok(decoded)
}

/// `SELECT` of `query` without a limit: filter, keyset position, order.
fn select<E: Entity>(query: &FindQuery<E>) -> Result<SelectStatement> {
    let schema = E::SCHEMA;
    let keyset = Keyset::new(&query.order)?;
    let mut select = Query::select();
    select
        .columns(column_names(schema))
        .from(table(schema))
        .and_where(filter_expr(schema, query.filter.node())?);
    if let Some(cursor) = &query.after {
        let position = keyset.after(cursor)?;
        // A client's cursor is checked like any value before it is bound:
        // a tampered key with a NUL or a year PostgreSQL cannot hold is
        // invalid input, not a server error after a round trip.
        for (_, value) in position.position() {
            crate::validate::check_value(schema.entity, "cursor", value)?;
        }
        select.and_where(after(&position));
    }
    order_by(&mut select, keyset.keys());
    Ok(select)
}

/// `SELECT COUNT(*)` of the rows matching `filter`.
pub(crate) async fn count<E: Entity>(repo: &PgRepository<E>, filter: Filter<E>) -> Result<u64> {
    let schema = E::SCHEMA;
    let mut select = Query::select();
    select
        .expr(Expr::cust("COUNT(*)"))
        .from(table(schema))
        .and_where(filter_expr(schema, filter.node())?);
    let rows = run_select(repo, &select).await?;
    let count: i64 = rows
        .first()
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(repo.exec.map_err(schema))?
        .unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Whether a row matches `filter`: `SELECT 1 ... LIMIT 1`, which stops at the first match.
pub(crate) async fn exists<E: Entity>(repo: &PgRepository<E>, filter: Filter<E>) -> Result<bool> {
    let schema = E::SCHEMA;
    let mut select = Query::select();
    select
        .expr(Expr::cust("1"))
        .from(table(schema))
        .and_where(filter_expr(schema, filter.node())?)
        .limit(1);
    Ok(!run_select(repo, &select).await?.is_empty())
}

/// What `delete_where` removed.
pub(crate) enum Deleted {
    /// How many rows.
    Count(u64),
    /// The ids of the rows (asked for when the cache must drop them).
    Ids(Vec<Value>),
}

impl Deleted {
    pub(crate) fn count(&self) -> u64 {
        match self {
            Deleted::Count(n) => *n,
            Deleted::Ids(ids) => ids.len() as u64,
        }
    }
}

/// How `delete_where` removes the rows it matches.
#[derive(Clone, Copy)]
pub(crate) enum Removal {
    /// `DELETE`.
    Hard,
    /// `UPDATE ... SET deleted = now` (and `updated_at`, the version).
    Soft(SoftDeleteStamp),
}

/// `DELETE ... WHERE filter` (or the soft delete's `UPDATE`), with
/// `RETURNING id` when `returning`. `filter` is already scoped.
pub(crate) async fn delete_where<E: Entity>(
    repo: &PgRepository<E>,
    filter: Filter<E>,
    returning: bool,
    removal: Removal,
) -> Result<Deleted> {
    let schema = E::SCHEMA;
    let condition = filter_expr(schema, filter.node())?;
    let id = sea_query::Alias::new(schema.id_column().name);
    let (sql, values) = match removal {
        Removal::Hard => {
            let mut delete = Query::delete()
                .from_table(table(schema))
                .and_where(condition)
                .to_owned();
            if returning {
                delete.returning_col(id);
            }
            delete.build(PostgresQueryBuilder)
        }
        Removal::Soft(stamp) => {
            let mut update = soft_delete_update(schema, stamp, repo.clock().now());
            update.and_where(condition);
            if returning {
                update.returning_col(id);
            }
            update.build(PostgresQueryBuilder)
        }
    };
    repo.check_bind(&values.0, &[])?;
    // Safe: sea-query text over schema identifiers; values are bound, never in the text.
    let query = bind_all(sqlx::query(AssertSqlSafe(sql)), values);
    if returning {
        let rows = repo
            .exec
            .write(schema, |held| Box::pin(query.fetch_all(&mut **held)))
            .await?;
        record_rows(rows.len() as u64);
        let ids = rows
            .iter()
            .map(|row| crate::bind::decode_column(schema, schema.id, row, 0))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Deleted::Ids(ids));
    }
    let done = repo
        .exec
        .write(schema, |held| Box::pin(query.execute(&mut **held)))
        .await?;
    record_rows(done.rows_affected());
    Ok(Deleted::Count(done.rows_affected()))
}

/// `UPDATE t SET deleted = now [, updated_at = now] [, version = version + 1]`
/// with the time bound; the caller adds the condition.
fn soft_delete_update(
    schema: &'static EntitySchema,
    stamp: SoftDeleteStamp,
    now: chrono::DateTime<chrono::Utc>,
) -> UpdateStatement {
    let now = Value::TimestampTz(now);
    let mut update = Query::update();
    update.table(table(schema));
    for i in std::iter::once(stamp.column).chain(stamp.updated_at) {
        let c = &schema.columns[i];
        update.value(c.name, val(c, now.clone()));
    }
    if let Some(i) = stamp.version {
        let c = &schema.columns[i];
        update.value(c.name, col(c).add(Expr::cust("1")));
    }
    update
}

async fn run_select<E: Entity>(
    repo: &PgRepository<E>,
    select: &SelectStatement,
) -> Result<Vec<sqlx::postgres::PgRow>> {
    let (sql, values) = select.build(PostgresQueryBuilder);
    run_sql(repo, &sql, values).await
}

async fn run_sql<E: Entity>(
    repo: &PgRepository<E>,
    sql: &str,
    values: sea_query::Values,
) -> Result<Vec<sqlx::postgres::PgRow>> {
    repo.check_bind(&values.0, &[])?;
    let sql: std::sync::Arc<str> = sql.into();
    repo.exec
        .read(&repo.route, E::SCHEMA, |held| {
            // Safe: sea-query text over schema identifiers; values are bound, never in the text.
            let query = sqlx::query(AssertSqlSafe(std::sync::Arc::clone(&sql)));
            Box::pin(bind_all(query, values.clone()).fetch_all(&mut **held))
        })
        .await
}

/// The SQL text of a find, for tests that check values never reach it.
#[cfg(test)]
pub(crate) fn find_sql<E: Entity>(query: &FindQuery<E>) -> Result<String> {
    Ok(select(query)?.build(PostgresQueryBuilder).0)
}
