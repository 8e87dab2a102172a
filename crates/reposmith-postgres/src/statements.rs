//! Statements of fixed shape (get, get_many, insert, update, upsert, delete,
//! exists, and the soft delete's delete, restore and purge), rendered once
//! per entity type and row scope shape and shared by every repository of
//! that pair, so each connection prepares them once and sqlx's statement
//! cache hits.
//!
//! They are built with typed NULL placeholders; callers bind the real values
//! in the order the `*_columns` lists give, which is the placeholder order,
//! then the row scope's values (`PgRepository::scoped_params`): the scope's
//! condition is the last one of every `WHERE`.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use reposmith_core::scope::ScopeShape;
use reposmith_core::stamp::SoftDeleteStamp;
use reposmith_core::{ColumnRole, EntitySchema, IdStrategy, RowScope, Value};
use sea_query::{
    Expr, ExprTrait, InsertStatement, IntoTableRef, OnConflict, PostgresQueryBuilder, Query,
    ReturningClause, TableRef,
};

use crate::bind::array_of;
use crate::render::{col, scope_expr, val};

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
    /// `DELETE FROM t WHERE id = $1` (and the scope).
    pub(crate) delete: Arc<str>,
    /// `DELETE FROM t WHERE id = $1` (and the scope with deleted rows): `purge`.
    pub(crate) purge: Arc<str>,
    /// The soft delete and restore of an entity with `#[repo(soft_delete)]`.
    pub(crate) soft: Option<SoftStatements>,
}

/// The statements of `#[repo(soft_delete)]` entities. Each binds the time
/// (once per stamped column: the soft-delete column, then `updated_at` if
/// any; only `updated_at` for a restore), then the id, then the scope.
#[derive(Debug)]
pub(crate) struct SoftStatements {
    /// `UPDATE t SET deleted = $1 [, updated_at = $2] [, version = version + 1]
    /// WHERE id = $ AND deleted IS NULL AND scope`.
    pub(crate) delete: Arc<str>,
    /// `UPDATE t SET deleted = NULL [, updated_at = $1] [, version = version + 1]
    /// WHERE id = $ AND deleted IS NOT NULL AND scope (with deleted rows)`.
    pub(crate) restore: Arc<str>,
    /// The stamped columns.
    pub(crate) stamp: SoftDeleteStamp,
}

/// The statements of entity type `type_id` under a row scope of `scope`'s
/// shape, built on first use.
pub(crate) fn statements(
    type_id: TypeId,
    schema: &'static EntitySchema,
    scope: &RowScope,
) -> Arc<Statements> {
    type Key = (TypeId, ScopeShape);
    static CACHE: OnceLock<RwLock<HashMap<Key, Arc<Statements>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (type_id, scope.shape());
    if let Some(found) = cache.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Arc::clone(found);
    }
    let built = Arc::new(Statements::build(schema, scope));
    let mut map = cache.write().unwrap_or_else(|e| e.into_inner());
    Arc::clone(map.entry(key).or_insert(built))
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

/// `condition AND scope`.
fn and_scope(condition: Expr, scope: &Option<Expr>) -> Expr {
    match scope {
        Some(scope) => condition.and(scope.clone()),
        None => condition,
    }
}

impl Statements {
    fn build(schema: &'static EntitySchema, scope: &RowScope) -> Statements {
        let update_columns = updated_columns(schema);
        let insert_columns: Vec<usize> = (0..schema.columns.len())
            .filter(|&i| i != schema.id || schema.id_strategy != IdStrategy::Identity)
            .collect();
        let scoped = scope_expr(schema, scope);
        let any = scope_expr(schema, &scope.clone().with_deleted());
        let delete_by_id = |scope: &Option<Expr>| {
            render(
                Query::delete()
                    .from_table(table(schema))
                    .and_where(and_scope(id_is(schema), scope)),
            )
        };
        let soft = reposmith_core::stamp::soft_delete_stamp(schema).map(|stamp| SoftStatements {
            delete: soft_sql(schema, stamp, true, scope),
            restore: soft_sql(schema, stamp, false, scope),
            stamp,
        });
        Statements {
            get: select_where(schema, and_scope(id_is(schema), &scoped)),
            get_many: select_where(schema, and_scope(id_any(schema), &scoped)),
            exists: render(
                Query::select()
                    .expr(Expr::cust("1"))
                    .from(table(schema))
                    .and_where(and_scope(id_is(schema), &scoped)),
            ),
            insert: render(&insert_of(schema, &insert_columns)),
            update: update_sql(schema, &update_columns, &scoped),
            upsert: upsert_sql(schema, &update_columns),
            delete: delete_by_id(&scoped),
            purge: delete_by_id(&any),
            soft,
            insert_columns,
            update_columns,
        }
    }
}

/// The soft delete (`deleting`) or the restore of one row by id: the
/// soft-delete column set to the bound time (or NULL), `updated_at` stamped,
/// the version bumped; a delete matches live rows only, a restore deleted
/// rows only, both within the rest of `scope`.
fn soft_sql(
    schema: &'static EntitySchema,
    stamp: SoftDeleteStamp,
    deleting: bool,
    scope: &RowScope,
) -> Arc<str> {
    let column = &schema.columns[stamp.column];
    let mut update = Query::update();
    update.table(table(schema));
    if deleting {
        update.value(column.name, val(column, Value::Null));
    } else {
        update.value(column.name, Expr::cust("NULL"));
    }
    if let Some(i) = stamp.updated_at {
        let c = &schema.columns[i];
        update.value(c.name, val(c, Value::Null));
    }
    if let Some(i) = stamp.version {
        let c = &schema.columns[i];
        update.value(c.name, plus_one(col(c)));
    }
    let state = if deleting {
        col(column).is_null()
    } else {
        col(column).is_not_null()
    };
    let rest = scope_expr(schema, &scope.clone().with_deleted());
    update.and_where(and_scope(id_is(schema).and(state), &rest));
    render(&update)
}

/// Columns an update writes: all but the id, the version (bumped by SQL),
/// `created_at`, the soft-delete column (only delete, restore and upsert
/// change whether a row is deleted) and the tenant (a row never changes owner).
fn updated_columns(schema: &EntitySchema) -> Vec<usize> {
    let fixed = |role| {
        matches!(
            role,
            ColumnRole::Id
                | ColumnRole::Version
                | ColumnRole::CreatedAt
                | ColumnRole::SoftDelete
                | ColumnRole::Tenant
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

fn update_sql(schema: &'static EntitySchema, columns: &[usize], scope: &Option<Expr>) -> Arc<str> {
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
    if let Some(scope) = scope {
        update.and_where(scope.clone());
    }
    render(update.returning(returning(schema)))
}

/// The upsert writes every field: the soft-delete column too, so upserting
/// a deleted row's id brings the row back with the entity's value.
fn upsert_sql(schema: &'static EntitySchema, columns: &[usize]) -> Arc<str> {
    let all: Vec<usize> = (0..schema.columns.len()).collect();
    let mut written = columns.to_vec();
    written.extend(schema.soft_delete_column().map(|(i, _)| i));
    upsert_on_sql(schema, &all, &written, schema.id)
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
    // A unique index of a soft-deleting entity covers live rows only: the
    // conflict target names its predicate so Postgres infers that index.
    if conflict != schema.id
        && let Some((_, deleted)) = schema.soft_delete_column()
    {
        action.target_and_where(col(deleted).is_null());
    }
    // A row of another tenant is never overwritten: the conflicting row is
    // updated only when it has the tenant the new row was stamped with (else
    // nothing is returned and the repository reports the conflict).
    if let Some((_, tenant)) = schema.tenant_column() {
        let excluded = Expr::col((sea_query::Alias::new("excluded"), tenant.name));
        action.action_and_where(Expr::col((schema.table, tenant.name)).eq(excluded));
    }
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
