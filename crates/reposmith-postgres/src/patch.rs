//! Partial updates on PostgreSQL: `patch` as `UPDATE t SET .. WHERE id = $
//! [AND version = $] RETURNING cols`, `update_where` as `UPDATE t SET ..
//! WHERE <filter> [RETURNING ..]`, one statement each.
//!
//! The assignments were checked by the core ([`Changes::validate`]); here
//! every value is checked as insert checks it (NUL, instants PostgreSQL
//! cannot hold, JSON depth) and bound. `add` is `col = col + $delta`, so
//! concurrent additions serialize on the row lock and none is lost. JSON
//! path assignments nest `jsonb_set`, creating missing objects on the way
//! as MongoDB's `$set` of a dotted path does, and `#-` for removal. The
//! filter of `update_where` is rendered by [`filter_expr`], as `find`,
//! `count` and `delete_where` render theirs.

use reposmith_core::changes::{AssignOp, embed_changes, expected_version, updated_at_stamp};
use reposmith_core::{
    Changes, ColumnDef, ColumnType, Entity, EntitySchema, Error, Filter, Result, Value,
};
use sea_query::{Expr, ExprTrait, PostgresQueryBuilder, Query, UpdateStatement};
use sqlx::AssertSqlSafe;

use crate::PgRepository;
use crate::bind::{array_of, bind_all, decode_column, to_sea};
use crate::render::{col, filter_expr, val};
use crate::replica::Route;
use crate::repository::{record_rows, statement};
use crate::statements::{returning, table};
use crate::validate::{check_json, check_text, check_value};
use crate::write::id_text;

/// Checked assignments `(column, op)`, embeddings filled, ready to render.
pub(crate) type Parts = Vec<(usize, AssignOp)>;

/// Checks `changes`, re-embeds a changed embed source with the
/// repository's embedder and checks every value as insert would. Runs
/// before the statement deadline starts, like insert's embedding.
pub(crate) async fn prepare<E: Entity>(
    repo: &PgRepository<E>,
    changes: Changes<E>,
) -> Result<Parts> {
    changes.validate()?;
    let schema = E::SCHEMA;
    let mut parts = changes.into_parts();
    embed_changes(schema, repo.embedder.as_deref(), &mut parts).await?;
    for (column, op) in &parts {
        let field = schema.columns[*column].field;
        match op {
            AssignOp::Set(value) | AssignOp::Add(value) => {
                check_value(schema.entity, field, value)?
            }
            AssignOp::JsonSet { path, value } => {
                check_keys(schema, field, path)?;
                check_json(schema.entity, field, value)?;
            }
            AssignOp::JsonRemove { path } => check_keys(schema, field, path)?,
            other => return Err(unsupported(schema, field, other)),
        }
    }
    Ok(parts)
}

fn check_keys(schema: &EntitySchema, field: &str, path: &[String]) -> Result<()> {
    path.iter()
        .try_for_each(|key| check_text(schema.entity, field, key))
}

fn unsupported(schema: &EntitySchema, field: &str, op: &AssignOp) -> Error {
    Error::invalid(
        schema.entity,
        field,
        format!("not supported by PostgreSQL: {op:?}"),
    )
}

/// `UPDATE t SET <parts>, updated_at = now, version = version + 1`, no WHERE yet.
fn update_of(schema: &'static EntitySchema, parts: &Parts) -> Result<UpdateStatement> {
    let mut update = Query::update();
    update.table(table(schema));
    let mut done: Vec<usize> = Vec::new();
    for (column, _) in parts {
        if done.contains(column) {
            continue;
        }
        done.push(*column);
        let def = &schema.columns[*column];
        let ops = parts.iter().filter(|(c, _)| c == column).map(|(_, op)| op);
        update.value(def.name, assigned(schema, def, ops)?);
    }
    if let Some((i, value)) = updated_at_stamp(schema, chrono::Utc::now()) {
        let def = &schema.columns[i];
        update.value(def.name, val(def, value));
    }
    if let Some((_, version)) = schema.version_column() {
        update.value(
            version.name,
            Expr::cust_with_exprs("$1 + 1", [col(version)]),
        );
    }
    Ok(update)
}

/// The new value of `def` after `ops` (one whole-column op, or JSON path
/// ops applied in order).
fn assigned<'a>(
    schema: &EntitySchema,
    def: &ColumnDef,
    ops: impl Iterator<Item = &'a AssignOp>,
) -> Result<Expr> {
    let mut document = Expr::cust_with_exprs("COALESCE($1, '{}'::jsonb)", [col(def)]);
    for op in ops {
        match op {
            AssignOp::Set(value) => return Ok(val(def, value.clone())),
            AssignOp::Add(delta) => {
                return Ok(Expr::cust_with_exprs(
                    "$1 + $2",
                    [col(def), val(def, delta.clone())],
                ));
            }
            AssignOp::JsonSet { path, value } => {
                let value = val(def, Value::Json(value.clone()));
                document = json_set(document, path, value);
            }
            AssignOp::JsonRemove { path } => {
                document = Expr::cust_with_exprs("($1 #- $2)", [document, text_array(path)]);
            }
            other => return Err(unsupported(schema, def.field, other)),
        }
    }
    Ok(document)
}

/// `path` as a bound `text[]`.
fn text_array(path: &[String]) -> Expr {
    let keys = path.iter().map(|k| Value::Text(k.clone())).collect();
    Expr::val(array_of(keys, &ColumnType::Text))
}

/// `jsonb_set(doc, '{k1}', jsonb_set(COALESCE(doc -> 'k1', '{}'), '{k2}', ..))`:
/// sets `value` at `path`, creating the objects missing on the way (a
/// single `jsonb_set` leaves the document unchanged when an intermediate
/// key is missing). A scalar on the way is an error from the server.
fn json_set(document: Expr, path: &[String], value: Expr) -> Expr {
    let (key, rest) = path
        .split_first()
        .expect("validated: the path is not empty");
    let inner = if rest.is_empty() {
        value
    } else {
        let child = Expr::cust_with_exprs(
            "COALESCE($1 -> $2, '{}'::jsonb)",
            [document.clone(), Expr::val(key.clone())],
        );
        json_set(child, rest, value)
    };
    Expr::cust_with_exprs(
        "jsonb_set($1, $2, $3, true)",
        [document, text_array(std::slice::from_ref(key)), inner],
    )
}

/// Builds, checks against the bind cap and binds `update`.
fn bound<E: Entity>(
    repo: &PgRepository<E>,
    update: &UpdateStatement,
) -> Result<crate::bind::PgQuery<'static>> {
    let (sql, values) = update.build(PostgresQueryBuilder);
    repo.check_bind(&values.0, &[])?;
    // Safe: sea-query text over schema identifiers; values are bound, never in the text.
    Ok(bind_all(sqlx::query(AssertSqlSafe(sql)), values))
}

/// The patch of the row `id`: the stored row, or why none was written.
pub(crate) async fn patch<E: Entity>(
    repo: &PgRepository<E>,
    id: &E::Id,
    parts: &Parts,
    expected: Option<i64>,
) -> Result<E> {
    use reposmith_core::FieldType;
    let schema = E::SCHEMA;
    let expected = expected_version(schema, expected)?;
    let id_value = id.to_value();
    check_value(schema.entity, schema.id_column().field, &id_value)?;
    let id_def = schema.id_column();
    let mut update = update_of(schema, parts)?;
    update.and_where(col(id_def).eq(val(id_def, id_value.clone())));
    // The repository's row scope (live rows, unless the `with_deleted` view).
    if !repo.scope.is_empty() {
        update.and_where(filter_expr(schema, &repo.scope.node())?);
    }
    if let Some((i, version)) = &expected {
        let def = &schema.columns[*i];
        update.and_where(col(def).eq(val(def, version.clone())));
    }
    update.returning(returning(schema));
    let query = bound(repo, &update)?;
    let row = repo
        .exec
        .write(schema, |held| Box::pin(query.fetch_optional(&mut **held)))
        .await?;
    record_rows(u64::from(row.is_some()));
    match row {
        Some(row) => repo.entity(&row),
        None => Err(miss(repo, id_value, expected).await?),
    }
}

/// Why a patch matched no row: the row is gone, or its version moved on.
async fn miss<E: Entity>(
    repo: &PgRepository<E>,
    id: Value,
    expected: Option<(usize, Value)>,
) -> Result<Error> {
    let schema = E::SCHEMA;
    let params = repo.scoped_params(vec![to_sea(id.clone(), &schema.id_column().ty)]);
    let sql = &repo.statements.exists;
    let primary = Route::primary();
    let exists = repo
        .exec
        .read(&primary, schema, |held| {
            Box::pin(statement(sql, params.clone()).fetch_optional(&mut **held))
        })
        .await?
        .is_some();
    Ok(match expected {
        Some((_, version)) if exists => Error::StaleVersion {
            entity: schema.entity,
            id: id_text(&id),
            expected: version.as_integer().unwrap_or(0),
        },
        _ => Error::NotFound {
            entity: schema.entity,
            id: id_text(&id),
        },
    })
}

/// What `update_where` returns from the statement.
pub(crate) enum Returned {
    /// Nothing but the count.
    Count,
    /// The ids (for the cache).
    Ids,
    /// Whole rows.
    Rows,
}

/// `UPDATE .. WHERE filter`: how many rows, the updated rows when `Rows`
/// is asked, and the ids written whenever rows or ids were returned.
pub(crate) async fn update_where<E: Entity>(
    repo: &PgRepository<E>,
    filter: Filter<E>,
    parts: &Parts,
    returned: Returned,
) -> Result<(u64, Vec<E>, Vec<Value>)> {
    let schema = E::SCHEMA;
    let mut update = update_of(schema, parts)?;
    update.and_where(filter_expr(schema, repo.scoped(filter).node())?);
    match returned {
        Returned::Count => {}
        Returned::Ids => {
            update.returning_col(sea_query::Alias::new(schema.id_column().name));
        }
        Returned::Rows => {
            update.returning(returning(schema));
        }
    }
    let query = bound(repo, &update)?;
    if matches!(returned, Returned::Count) {
        let done = repo
            .exec
            .write(schema, |held| Box::pin(query.execute(&mut **held)))
            .await?;
        record_rows(done.rows_affected());
        return Ok((done.rows_affected(), Vec::new(), Vec::new()));
    }
    let rows = repo
        .exec
        .write(schema, |held| Box::pin(query.fetch_all(&mut **held)))
        .await?;
    record_rows(rows.len() as u64);
    let id_at = match returned {
        Returned::Rows => schema.id,
        _ => 0,
    };
    let ids = rows
        .iter()
        .map(|row| decode_column(schema, schema.id, row, id_at))
        .collect::<Result<Vec<_>>>()?;
    let entities = match returned {
        Returned::Rows => rows
            .iter()
            .map(|row| repo.entity(row))
            .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    Ok((rows.len() as u64, entities, ids))
}
