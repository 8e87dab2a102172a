//! `insert_many`: one statement per batch, every batch in one transaction.
//!
//! Entities without array columns are sent column-wise:
//! `INSERT INTO t (a, b) SELECT UNNEST($1::text[]), UNNEST($2::uuid[])` —
//! one array parameter per column, so the bind count does not grow with the
//! batch and the statement text is the same for every batch. (Several
//! `UNNEST`s in one select list advance in lockstep, like the multi-argument
//! `UNNEST` in FROM.) Array columns cannot travel that way: an array of
//! arrays is one 2-D array and `UNNEST` would flatten it, so those entities
//! use multi-row `VALUES` batches kept under Postgres' 65,535 binds.

use reposmith_core::{ColumnType, Entity, EntitySchema, Result, Value};
use sea_query::{Expr, InsertStatement, PostgresQueryBuilder, Query};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::PgRepository;
use crate::bind::{array_of, bind_all};
use crate::ddl::sql_type;
use crate::repository::record_rows;
use crate::statements::table;
use crate::validate::check_row;
use crate::write::stamp_new;

/// Rows per UNNEST batch: big enough to amortise the round trip, small
/// enough that 100k rows are ten statements, not one giant one.
const UNNEST_BATCH: usize = 10_000;
/// Postgres' limit on parameters in one statement.
const MAX_BINDS: usize = 65_535;
/// Rows per VALUES batch at most, whatever the column count.
const VALUES_BATCH: usize = 1_000;

/// Inserts `entities` all or nothing; returns how many were stored.
pub(crate) async fn insert_many<E: Entity>(repo: &PgRepository<E>, entities: &[E]) -> Result<u64> {
    if entities.is_empty() {
        return Ok(0);
    }
    let rows = prepare(E::SCHEMA, entities)?;
    let columns = repo.statements.insert_columns.clone();
    if repo.exec.in_unit() {
        return run_batches(repo, &columns, rows).await;
    }
    // On the pool: a unit of its own, so a failing batch undoes the earlier ones
    // and a cancelled call leaves no open transaction behind.
    let unit = repo.exec.backend().begin().await?;
    let count = run_batches(&unit.repo::<E>(), &columns, rows).await?;
    unit.commit().await?;
    Ok(count)
}

/// Every entity's values, stamped and checked before anything is sent.
fn prepare<E: Entity>(schema: &EntitySchema, entities: &[E]) -> Result<Vec<Vec<Value>>> {
    entities
        .iter()
        .map(|entity| {
            let mut values = entity.to_values()?;
            stamp_new(schema, &mut values);
            check_row(schema, &values)?;
            Ok(values)
        })
        .collect()
}

async fn run_batches<E: Entity>(
    repo: &PgRepository<E>,
    columns: &[usize],
    rows: Vec<Vec<Value>>,
) -> Result<u64> {
    let schema = E::SCHEMA;
    let has_arrays = columns
        .iter()
        .any(|&i| matches!(schema.columns[i].ty, ColumnType::Array(_)));
    let per_batch = if has_arrays {
        VALUES_BATCH.min(MAX_BINDS / columns.len().max(1))
    } else {
        UNNEST_BATCH
    };
    let mut connection = repo.exec.acquire().await?;
    let mut total = 0;
    for batch in rows.chunks(per_batch) {
        let statement = if has_arrays {
            values_insert(schema, columns, batch)
        } else {
            unnest_insert(schema, columns, batch)
        };
        total += execute(&mut connection, statement)
            .await
            .map_err(repo.exec.map_err(schema))?;
    }
    record_rows(total);
    Ok(total)
}

async fn execute(connection: &mut PgConnection, statement: InsertStatement) -> sqlx::Result<u64> {
    let (sql, values) = statement.build(PostgresQueryBuilder);
    // Safe: sea-query text over schema identifiers and type names; values are bound.
    let done = bind_all(sqlx::query(AssertSqlSafe(sql)), values)
        .execute(connection)
        .await?;
    Ok(done.rows_affected())
}

fn insert_head(schema: &'static EntitySchema, columns: &[usize]) -> InsertStatement {
    let mut insert = Query::insert();
    insert
        .into_table(table(schema))
        .columns(columns.iter().map(|&i| schema.columns[i].name));
    insert
}

fn unnest_insert(
    schema: &'static EntitySchema,
    columns: &[usize],
    batch: &[Vec<Value>],
) -> InsertStatement {
    let mut select = Query::select();
    for &i in columns {
        let column = &schema.columns[i];
        let items: Vec<Value> = batch.iter().map(|row| row[i].clone()).collect();
        // The cast names a type from the schema, so Postgres knows the element
        // type even when every value in the batch is NULL.
        let template = format!("UNNEST($1::{}[])", sql_type(&column.ty));
        select.expr(Expr::cust_with_exprs(
            template,
            [Expr::val(array_of(items, &column.ty))],
        ));
    }
    let mut insert = insert_head(schema, columns);
    insert
        .select_from(select)
        .expect("one select expression per insert column");
    insert
}

fn values_insert(
    schema: &'static EntitySchema,
    columns: &[usize],
    batch: &[Vec<Value>],
) -> InsertStatement {
    let mut insert = insert_head(schema, columns);
    for row in batch {
        let values = columns
            .iter()
            .map(|&i| crate::render::val(&schema.columns[i], row[i].clone()));
        insert.values_panic(values);
    }
    insert
}
