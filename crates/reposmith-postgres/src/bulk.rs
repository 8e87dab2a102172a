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
//! transaction. Only entities without a binary encoding (arrays of arrays)
//! that need several `VALUES` batches (Postgres takes 65,535 binds per
//! statement) get a transaction of their own, so a failing batch undoes the
//! earlier ones. Every rejected row is named by its index in the batch.

use reposmith_core::{Entity, EntitySchema, Result, Value};
use std::fmt::Write;

use sea_query::Values;
use sqlx::AssertSqlSafe;

use crate::PgRepository;
use crate::bind::{bind_all, to_sea};
use crate::copy::{self, CopyError};
use crate::ddl::{quote_ident, table_name};
use crate::embed::Fills;
use crate::repository::record_rows;
use crate::validate::check_row;
use crate::write::stamp_new;

/// Postgres' limit on parameters in one statement.
const MAX_BINDS: usize = 65_535;
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
    let columns = repo.statements.insert_columns.clone();
    let shape = Shape::choose(E::SCHEMA, &columns, entities.len());
    let one = shape.is_one_statement(entities.len()) && repo.exec.statements_stand_alone();
    if repo.exec.in_unit() || one {
        // One statement is atomic by itself: BEGIN and COMMIT would only add
        // two round trips (a cancelled call leaves a connection that is
        // closed, not returned, so nothing is half-written either way).
        return run(repo, &columns, shape, entities, fills).await;
    }
    // Several statements, or behind a transaction pooler any: a unit of its
    // own, so a failing batch undoes the earlier ones, a cancelled call
    // leaves no open transaction behind, and the pooler keeps the
    // statements on one server connection (see the `pooler` module).
    let unit = repo.exec.backend().begin().await?;
    let count = run(&unit.repo_of::<E>(), &columns, shape, entities, fills).await?;
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

    fn is_one_statement(self, rows: usize) -> bool {
        match self {
            Shape::Copy => true,
            Shape::Values(per_batch) => rows <= per_batch,
        }
    }
}

async fn run<E: Entity>(
    repo: &PgRepository<E>,
    columns: &[usize],
    shape: Shape,
    entities: &[E],
    fills: &Fills,
) -> Result<u64> {
    let total = match shape {
        Shape::Copy => copy_rows(repo, columns, entities, fills).await?,
        Shape::Values(per_batch) => {
            values_batches(repo, columns, per_batch, entities, fills).await?
        }
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
    let mut connection = repo.exec.acquire().await?;
    match copy::copy_in(&mut connection, columns, entities, fills).await {
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
) -> Result<Vec<Vec<Value>>> {
    batch
        .iter()
        .enumerate()
        .map(|(i, entity)| {
            let row = || -> Result<Vec<Value>> {
                let mut values = entity.to_values()?;
                stamp_new(schema, &mut values);
                fills.apply(first + i, &mut values);
                check_row(schema, &values)?;
                Ok(values)
            };
            row().map_err(|e| e.at_row(first + i, total))
        })
        .collect()
}

/// Multi-row `VALUES` statements, each batch stamped and checked before it is sent.
async fn values_batches<E: Entity>(
    repo: &PgRepository<E>,
    columns: &[usize],
    per_batch: usize,
    entities: &[E],
    fills: &Fills,
) -> Result<u64> {
    let schema = E::SCHEMA;
    let mut connection = repo.exec.acquire().await?;
    let mut total = 0;
    for (n, batch) in entities.chunks(per_batch).enumerate() {
        let rows = prepare(schema, batch, (n * per_batch, entities.len()), fills)?;
        let sql = values_sql(schema, columns, rows.len());
        let params = values_params(schema, columns, rows);
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

/// The rows' values in placeholder order, moved rather than cloned.
fn values_params(schema: &EntitySchema, columns: &[usize], rows: Vec<Vec<Value>>) -> Values {
    let mut params = Vec::with_capacity(rows.len() * columns.len());
    for mut row in rows {
        for &i in columns {
            let value = std::mem::replace(&mut row[i], Value::Null);
            params.push(to_sea(value, &schema.columns[i].ty));
        }
    }
    Values(params)
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
        assert!(Shape::Copy.is_one_statement(1_000_000));
        assert!(Shape::Values(1_000).is_one_statement(1_000));
        assert!(!Shape::Values(1_000).is_one_statement(1_001));
    }
}
