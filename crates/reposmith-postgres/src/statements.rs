//! Statements of fixed shape (get, get_many, insert, update, upsert, delete,
//! exists), rendered once per entity type and shared by every repository of
//! it, so each connection prepares them once and sqlx's statement cache hits.
//!
//! They are built with typed NULL placeholders; callers bind the real values
//! in the order the `*_columns` lists give, which is the placeholder order.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use reposmith_core::{ColumnRole, EntitySchema, IdStrategy, Value};
use sea_query::{
    Expr, ExprTrait, InsertStatement, IntoTableRef, OnConflict, PostgresQueryBuilder, Query,
    ReturningClause, TableRef,
};

use crate::bind::array_of;
use crate::render::{col, val};

/// The fixed SQL of one entity type.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `SELECT cols FROM t WHERE id = $1`.
    pub(crate) get: Arc<str>,
    /// `SELECT cols FROM t WHERE id = ANY($1)`.
    pub(crate) get_many: Arc<str>,
    /// `SELECT 1 FROM t WHERE id = $1`.
    pub(crate) exists: Arc<str>,
    /// `INSERT ... RETURNING cols`, values in `insert_columns` order.
    pub(crate) insert: Arc<str>,
    /// Columns the insert binds (the id is absent for identity ids).
    pub(crate) insert_columns: Vec<usize>,
    /// `UPDATE ... SET ... WHERE id = $ [AND version = $] RETURNING cols`.
    pub(crate) update: Arc<str>,
    /// Columns the update's SET binds, then the id, then the expected version.
    pub(crate) update_columns: Vec<usize>,
    /// `INSERT ... ON CONFLICT (id) DO UPDATE ... RETURNING cols`, all columns bound.
    pub(crate) upsert: Arc<str>,
    /// `DELETE FROM t WHERE id = $1`.
    pub(crate) delete: Arc<str>,
}

/// The statements of entity type `type_id`, built on first use.
pub(crate) fn statements(type_id: TypeId, schema: &'static EntitySchema) -> Arc<Statements> {
    static CACHE: OnceLock<RwLock<HashMap<TypeId, Arc<Statements>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&type_id)
    {
        return Arc::clone(found);
    }
    let built = Arc::new(Statements::build(schema));
    let mut map = cache.write().unwrap_or_else(|e| e.into_inner());
    Arc::clone(map.entry(type_id).or_insert(built))
}

/// The table, schema-qualified when the entity names a schema.
pub(crate) fn table(schema: &'static EntitySchema) -> TableRef {
    match schema.schema {
        Some(namespace) => (namespace, schema.table).into_table_ref(),
        None => schema.table.into_table_ref(),
    }
}

/// Every column, for `SELECT` and `RETURNING` lists (never `*`).
pub(crate) fn column_names(schema: &EntitySchema) -> impl Iterator<Item = &'static str> + '_ {
    schema.columns.iter().map(|c| c.name)
}

pub(crate) fn returning(schema: &EntitySchema) -> ReturningClause {
    Query::returning().columns(column_names(schema))
}

/// `id = <placeholder>`.
fn id_is(schema: &'static EntitySchema) -> Expr {
    let id = schema.id_column();
    col(id).eq(val(id, Value::Null))
}

/// `col + 1` with a literal one: the increment is part of the statement's shape, not a value.
fn plus_one(column: Expr) -> Expr {
    column.add(Expr::cust("1"))
}

impl Statements {
    fn build(schema: &'static EntitySchema) -> Statements {
        let update_columns = updated_columns(schema);
        let insert_columns: Vec<usize> = (0..schema.columns.len())
            .filter(|&i| i != schema.id || schema.id_strategy != IdStrategy::Identity)
            .collect();
        Statements {
            get: select_where(schema, id_is(schema)),
            get_many: select_where(schema, id_any(schema)),
            exists: render(
                Query::select()
                    .expr(Expr::cust("1"))
                    .from(table(schema))
                    .and_where(id_is(schema)),
            ),
            insert: render(&insert_of(schema, &insert_columns)),
            update: update_sql(schema, &update_columns),
            upsert: upsert_sql(schema, &update_columns),
            delete: render(
                Query::delete()
                    .from_table(table(schema))
                    .and_where(id_is(schema)),
            ),
            insert_columns,
            update_columns,
        }
    }
}

/// Columns an update writes: all but the id, the version (bumped by SQL) and `created_at`.
fn updated_columns(schema: &EntitySchema) -> Vec<usize> {
    let fixed = |role| {
        matches!(
            role,
            ColumnRole::Id | ColumnRole::Version | ColumnRole::CreatedAt
        )
    };
    (0..schema.columns.len())
        .filter(|&i| !fixed(schema.columns[i].role))
        .collect()
}

fn id_any(schema: &'static EntitySchema) -> Expr {
    let id = schema.id_column();
    let ids = Expr::val(array_of(Vec::new(), &id.ty));
    Expr::cust_with_exprs("$1 = ANY($2)", [col(id), ids])
}

fn select_where(schema: &'static EntitySchema, condition: Expr) -> Arc<str> {
    render(
        Query::select()
            .columns(column_names(schema))
            .from(table(schema))
            .and_where(condition),
    )
}

fn insert_of(schema: &'static EntitySchema, columns: &[usize]) -> InsertStatement {
    let defs = columns.iter().map(|&i| &schema.columns[i]);
    let mut insert = Query::insert();
    insert
        .into_table(table(schema))
        .columns(defs.clone().map(|c| c.name))
        .values_panic(defs.map(|c| val(c, Value::Null)))
        .returning(returning(schema));
    insert
}

fn update_sql(schema: &'static EntitySchema, columns: &[usize]) -> Arc<str> {
    let mut update = Query::update();
    update.table(table(schema));
    for &i in columns {
        let c = &schema.columns[i];
        update.value(c.name, val(c, Value::Null));
    }
    match schema.version_column() {
        Some((_, version)) => {
            update
                .value(version.name, plus_one(col(version)))
                .and_where(id_is(schema))
                .and_where(col(version).eq(val(version, Value::Null)));
        }
        None if columns.is_empty() => {
            // Nothing to write: SET id = id keeps the statement valid and still reports the row.
            let id = schema.id_column();
            update.value(id.name, col(id)).and_where(id_is(schema));
        }
        None => {
            update.and_where(id_is(schema));
        }
    }
    render(update.returning(returning(schema)))
}

fn upsert_sql(schema: &'static EntitySchema, columns: &[usize]) -> Arc<str> {
    let all: Vec<usize> = (0..schema.columns.len()).collect();
    upsert_on_sql(schema, &all, columns, schema.id)
}

/// `INSERT (inserted) ... ON CONFLICT (conflict) DO UPDATE SET (updated)
/// RETURNING cols`; the version, if any, is bumped by SQL.
pub(crate) fn upsert_on_sql(
    schema: &'static EntitySchema,
    inserted: &[usize],
    updated: &[usize],
    conflict: usize,
) -> Arc<str> {
    let mut insert = insert_of(schema, inserted);
    let target = &schema.columns[conflict];
    let mut action = OnConflict::column(target.name);
    let names: Vec<&str> = updated
        .iter()
        .filter(|&&i| i != conflict)
        .map(|&i| schema.columns[i].name)
        .collect();
    if names.is_empty() {
        action.update_column(target.name);
    } else {
        action.update_columns(names);
    }
    if let Some((_, version)) = schema.version_column() {
        action.value(
            version.name,
            plus_one(Expr::col((schema.table, version.name))),
        );
    }
    render(insert.on_conflict(action))
}

fn render<S: sea_query::QueryStatementWriter>(statement: &S) -> Arc<str> {
    let (sql, _placeholders) = statement.build(PostgresQueryBuilder);
    Arc::from(sql)
}
