//! `insert_many`: every row in one statement where possible, all or nothing.
//!
//! Two statement shapes, chosen by batch size:
//! - Below [`COPY_FROM_ROWS`] (200) rows, one multi-row `INSERT ... VALUES`: one
//!   round trip, and on the pool no transaction at all (one statement is
//!   atomic by itself).
//! - From there on, binary `COPY ... FROM STDIN` ([`crate::copy`]): one
//!   statement however many rows, streamed in 1 MiB chunks, each row stamped
//!   and checked just before it is encoded, so memory stays near one chunk.
//!   It measured 1.6x faster than one `UNNEST` array per column (382k against
//!   237k rows/s for 100k rows on the 2-core test machine, `cargo xtask bench`),
//!   but pays two round trips (the COPY, then its data and end) where an
//!   INSERT pays one, which dominates a small batch.
//!
//! A COPY is a single statement too, so on the pool it also runs without a
//! transaction. Only rows that need several `VALUES` batches (Postgres takes
//! 65,535 binds per statement, and each statement at most
//! `PgConfig::max_bind_bytes` of values) get a transaction of their own, so
//! a failing batch undoes the earlier ones. The `VALUES` rows are all
//! stamped, checked and measured before the first is sent, so the batches
//! are known before the choice (that path holds every row's values at once;
//! it serves fewer than 200 rows, or entities COPY cannot encode). A COPY
//! holds each row to the cap instead. Every rejected row is named by its
//! index in the batch.

use reposmith_core::{Entity, EntitySchema, Result, Value};
use std::fmt::Write;

use sea_query::Values;
use sqlx::AssertSqlSafe;

use crate::PgRepository;
use crate::bind::{MAX_BINDS, bind_all, bound_size, check_bound_size, to_sea};
use crate::copy::{self, CopyError};
use crate::ddl::{quote_ident, table_name};
use crate::embed::Fills;
use crate::repository::record_rows;
use crate::validate::check_row;
use crate::write::stamp_new;

/// Rows per VALUES batch at most, whatever the column count.
const VALUES_BATCH: usize = 1_000;

/// Rows from which binary COPY beats one multi-row INSERT. Measured with
/// `cargo xtask bench batches` (the `bench_users` rows of Diesel's
/// `insert_users`, interleaved): see the crossover table in the README.
pub(crate) const COPY_FROM_ROWS: usize = 200;

/// Inserts `entities` all or nothing; returns how many were stored.
pub(crate) async fn insert_many<E: Entity>(
    repo: &PgRepository<E>,
    entities: &[E],
    fills: &Fills,
) -> Result<u64> {
    if entities.is_empty() {
        return Ok(0);
    }
    let schema = E::SCHEMA;
    let columns = repo.statements.insert_columns.clone();
    let limit = repo.exec.backend().max_bind_bytes();
    let plan = match Shape::choose(schema, &columns, entities.len()) {
        Shape::Copy => Plan::Copy,
        Shape::Values(per_batch) => {
            let rows = prepare(schema, entities, (0, entities.len()), fills, repo.clock())?;
            Plan::Values(batches(schema, &columns, rows, per_batch, limit)?)
        }
    };
    let one = plan.is_one_statement() && repo.exec.statements_stand_alone();
    if repo.exec.in_unit() || one {
        // One statement is atomic by itself: BEGIN and COMMIT would only add
        // two round trips (a cancelled call leaves a connection that is
        // closed, not returned, so nothing is half-written either way).
        return run(repo, &columns, plan, entities, fills).await;
    }
    // Several statements, or behind a transaction pooler any: a unit of its
    // own, so a failing batch undoes the earlier ones, a cancelled call
    // leaves no open transaction behind, and the pooler keeps the
    // statements on one server connection (see the `pooler` module).
    let unit = repo.exec.backend().begin().await?;
    let count = run(&unit.repo_of::<E>(), &columns, plan, entities, fills).await?;
    unit.commit().await?;
    Ok(count)
}

/// The statement shape of one `insert_many` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One binary COPY.
    Copy,
    /// Multi-row `VALUES` statements of up to this many rows each.
    Values(usize),
}

impl Shape {
    fn choose(schema: &EntitySchema, columns: &[usize], rows: usize) -> Shape {
        if rows >= COPY_FROM_ROWS && copy::supports(schema, columns) {
            return Shape::Copy;
        }
        Shape::Values(VALUES_BATCH.min(MAX_BINDS / columns.len().max(1)))
    }
}

/// What one `insert_many` call sends.
enum Plan {
    /// One binary COPY, rows encoded as they go.
    Copy,
    /// `VALUES` statements: each batch's row count and bound values.
    Values(Vec<(usize, Values)>),
}

impl Plan {
    fn is_one_statement(&self) -> bool {
        match self {
            Plan::Copy => true,
            Plan::Values(batches) => batches.len() == 1,
        }
    }
}

/// `rows` cut into `VALUES` batches of at most `per_batch` rows and `limit`
/// bound bytes each; a row that alone binds more than `limit` is
/// [`Error::TooLarge`](reposmith_core::Error::TooLarge) naming its index.
fn batches(
    schema: &EntitySchema,
    columns: &[usize],
    rows: Vec<Vec<Value>>,
    per_batch: usize,
    limit: usize,
) -> Result<Vec<(usize, Values)>> {
    let total = rows.len();
    let mut batches = Vec::new();
    let (mut params, mut count, mut bytes) = (Vec::new(), 0, 0);
    for (index, mut row) in rows.into_iter().enumerate() {
        let row: Vec<_> = columns
            .iter()
            .map(|&i| {
                to_sea(
                    std::mem::replace(&mut row[i], Value::Null),
                    &schema.columns[i].ty,
                )
            })
            .collect();
        let size = bound_size(&row);
        if size > limit {
            let names = |i: usize| columns.get(i).map(|&c| schema.columns[c].field);
            return Err(check_bound_size(limit, schema.entity, &row, names)
                .expect_err("over the limit")
                .at_row(index, total));
        }
        if count == per_batch || bytes + size > limit {
            batches.push((count, Values(std::mem::take(&mut params))));
            (count, bytes) = (0, 0);
        }
        params.extend(row);
        count += 1;
        bytes += size;
    }
    batches.push((count, Values(params)));
    Ok(batches)
}

async fn run<E: Entity>(
    repo: &PgRepository<E>,
    columns: &[usize],
    plan: Plan,
    entities: &[E],
    fills: &Fills,
) -> Result<u64> {
    let total = match plan {
        Plan::Copy => copy_rows(repo, columns, entities, fills).await?,
        Plan::Values(batches) => values_batches(repo, columns, batches).await?,
    };
    record_rows(total);
    Ok(total)
}

async fn copy_rows<E: Entity>(
    repo: &PgRepository<E>,
    columns: &[usize],
    entities: &[E],
    fills: &Fills,
) -> Result<u64> {
    let limit = repo.exec.backend().max_bind_bytes();
    let mut connection = repo.exec.acquire().await?;
    let clock = repo.clock();
    match copy::copy_in(&mut connection, columns, entities, fills, (limit, clock)).await {
        Ok(rows) => {
            connection.settle(&Ok::<u64, sqlx::Error>(rows));
            Ok(rows)
        }
        Err(CopyError::Input { error, aborted }) => {
            // A confirmed abort outside a transaction leaves an idle session
            // that can go back to the pool; inside a unit it has failed the
            // transaction, which the unsettled connection reports on drop.
            if aborted && !repo.exec.in_unit() {
                connection.settle(&Ok::<(), sqlx::Error>(()));
            }
            Err(error)
        }
        Err(CopyError::Sql(error)) => {
            let outcome = Err::<u64, _>(error);
            connection.settle(&outcome);
            outcome.map_err(repo.exec.map_err(E::SCHEMA))
        }
    }
}

/// The missing embeddings of `entities`, computed before anything is sent
/// (nothing at all without an embedder or embedded fields).
pub(crate) async fn embedded<E: Entity>(repo: &PgRepository<E>, entities: &[E]) -> Result<Fills> {
    let embeds = E::SCHEMA.columns.iter().any(|c| c.embed_from.is_some());
    if repo.embedder.is_none() || !embeds {
        return Ok(Fills::default());
    }
    let rows = entities
        .iter()
        .enumerate()
        .map(|(i, entity)| entity.to_values().map_err(|e| e.at_row(i, entities.len())))
        .collect::<Result<Vec<_>>>()?;
    crate::embed::fills(repo, &rows).await
}

/// One batch's values, stamped and checked before anything is sent; a
/// rejected row is named by its index among all `total` rows.
fn prepare<E: Entity>(
    schema: &EntitySchema,
    batch: &[E],
    (first, total): (usize, usize),
    fills: &Fills,
    clock: &reposmith_core::Clock,
) -> Result<Vec<Vec<Value>>> {
    batch
        .iter()
        .enumerate()
        .map(|(i, entity)| {
            let row = || -> Result<Vec<Value>> {
                let mut values = entity.to_values()?;
                stamp_new(schema, &mut values, clock);
                fills.apply(first + i, &mut values);
                check_row(schema, &values)?;
                Ok(values)
            };
            row().map_err(|e| e.at_row(first + i, total))
        })
        .collect()
}

/// Multi-row `VALUES` statements, one per batch.
async fn values_batches<E: Entity>(
    repo: &PgRepository<E>,
    columns: &[usize],
    batches: Vec<(usize, Values)>,
) -> Result<u64> {
    let schema = E::SCHEMA;
    let mut connection = repo.exec.acquire().await?;
    let mut total = 0;
    for (rows, params) in batches {
        let sql = values_sql(schema, columns, rows);
        // Safe: identifiers from the schema, quoted; every value is bound.
        let outcome = bind_all(sqlx::query(AssertSqlSafe(sql)), params)
            .execute(&mut *connection)
            .await
            .map(|done| done.rows_affected());
        connection.settle(&outcome);
        total += outcome.map_err(repo.exec.map_err(schema))?;
    }
    Ok(total)
}

/// `INSERT INTO t ("a", "b") VALUES ($1, $2), ($3, $4)` for `rows` rows.
/// Written directly rather than through sea-query's expression tree: the
/// text depends only on the columns and the row count, and building a tree
/// node per value cost a quarter of a 250-row insert's client time.
fn values_sql(schema: &EntitySchema, columns: &[usize], rows: usize) -> String {
    let names: Vec<String> = columns
        .iter()
        .map(|&i| quote_ident(schema.columns[i].name))
        .collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        table_name(schema),
        names.join(", ")
    );
    sql.reserve(rows * columns.len() * 7);
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns.len() {
            n += 1;
            let sep = if column == 0 { "" } else { ", " };
            // Writing to a String cannot fail.
            let _ = write!(sql, "{sep}${n}");
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use reposmith_core::{ColumnDef, ColumnRole, ColumnType, IdStrategy};

    use super::*;

    static COLUMNS: [ColumnDef; 2] = [
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("name", "na\"me", ColumnType::Text, false),
    ];
    static SCHEMA: EntitySchema =
        EntitySchema::new("User", "users", &COLUMNS, 0, IdStrategy::Assigned, &[]);

    #[test]
    fn values_sql_quotes_names_and_numbers_every_placeholder_once() {
        assert_eq!(
            values_sql(&SCHEMA, &[0, 1], 3),
            "INSERT INTO \"users\" (\"id\", \"na\"\"me\") VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
    }

    #[test]
    fn the_shape_follows_the_batch_size() {
        let columns = [0, 1];
        assert_eq!(Shape::choose(&SCHEMA, &columns, 1), Shape::Values(1_000));
        assert_eq!(
            Shape::choose(&SCHEMA, &columns, COPY_FROM_ROWS - 1),
            Shape::Values(1_000)
        );
        assert_eq!(
            Shape::choose(&SCHEMA, &columns, COPY_FROM_ROWS),
            Shape::Copy
        );
    }

    fn row(id: i64, name: &str) -> Vec<Value> {
        vec![Value::I64(id), Value::Text(name.into())]
    }

    #[test]
    fn batches_split_by_rows_and_by_bound_bytes() {
        // Each row binds 4 + 8 (the id) and 4 + 10 (the name): 26 bytes.
        let rows = || (0..5).map(|i| row(i, "0123456789")).collect::<Vec<_>>();
        let counts = |b: Vec<(usize, Values)>| b.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        assert_eq!(
            counts(batches(&SCHEMA, &[0, 1], rows(), 2, 1 << 20).unwrap()),
            [2, 2, 1]
        );
        assert_eq!(
            counts(batches(&SCHEMA, &[0, 1], rows(), 10, 52).unwrap()),
            [2, 2, 1]
        );
        assert_eq!(
            counts(batches(&SCHEMA, &[0, 1], rows(), 10, 51).unwrap()),
            [1, 1, 1, 1, 1]
        );
        assert_eq!(
            counts(batches(&SCHEMA, &[0, 1], rows(), 10, 130).unwrap()),
            [5]
        );
        let err = batches(&SCHEMA, &[0, 1], rows(), 10, 25).unwrap_err();
        assert!(
            matches!(&err, reposmith_core::Error::TooLarge { size: 26, limit: 25, what }
                if what.contains("at index 0 of 5 rows") && what.contains("`name`")),
            "{err}"
        );
    }
}
