//! Partial updates on PostgreSQL: `patch` as `UPDATE t SET .. WHERE id = $
//! [AND version = $] RETURNING cols`, `update_where` as `UPDATE t SET ..
//! WHERE <filter> [RETURNING ..]`, one statement each.
//!
//! The assignments were checked by the core ([`Changes::validate`]); here
//! every value is checked as insert checks it (NUL, instants PostgreSQL
//! cannot hold, JSON depth) and bound. `add` is `col = col + $delta`, so
//! concurrent additions serialize on the row lock and none is lost. JSON
//! path assignments nest `jsonb_set`, creating missing objects on the way
//! as MongoDB's `$set` of a dotted path does, and `#-` for removal; a path
//! of several keys reads the document several times, so it reads it by an
//! alias in a subquery of its own and the statement grows linearly with
//! the number of paths (inlined, each path multiplied the text before it).
//! A `json_set` through a scalar (SQLSTATE 22023) is `InvalidInput`
//! naming the field and path, as on MongoDB.
//! A patch's integer `add` also requires the stored value to be in its
//! [`AddRange`], so a result outside the field's type writes nothing and is
//! reported naming the field; `update_where` leaves that to the server,
//! which refuses the whole statement (SQLSTATE 22003). The
//! filter of `update_where` is rendered by [`filter_expr`], as `find`,
//! `count` and `delete_where` render theirs.

use reposmith_core::changes::{
    AddRange, AssignOp, add_ranges, embed_changes, expected_version, json_path_through_scalar,
    patch_miss, updated_at_stamp,
};
use reposmith_core::{
    Changes, ColumnDef, ColumnType, Entity, EntitySchema, Error, Filter, Result, Value,
};
use sea_query::{Expr, ExprTrait, PostgresQueryBuilder, Query, UpdateStatement};
use sqlx::AssertSqlSafe;

use crate::PgRepository;
use crate::bind::{array_of, bind_all, decode_column};
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
fn update_of(
    schema: &'static EntitySchema,
    parts: &Parts,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<UpdateStatement> {
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
    if let Some((i, value)) = updated_at_stamp(schema, now) {
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
            AssignOp::JsonSet { path, value } if path.len() == 1 => {
                let value = val(def, Value::Json(value.clone()));
                document = json_set(|| document.clone(), path, value);
            }
            AssignOp::JsonSet { path, value } => {
                let value = val(def, Value::Json(value.clone()));
                let set = json_set(|| Expr::cust(DOCUMENT), path, value);
                document = Expr::cust_with_exprs(
                    "(SELECT $1 FROM (SELECT $2 AS reposmith_doc OFFSET 0) AS reposmith_step)",
                    [set, document],
                );
            }
            AssignOp::JsonRemove { path } => {
                document = Expr::cust_with_exprs("($1 #- $2)", [document, text_array(path)]);
            }
            other => return Err(unsupported(schema, def.field, other)),
        }
    }
    Ok(document)
}

/// The alias a multi-key JSON path reads the document by: its expression
/// appears once per key, and inlining it (itself the result of the paths
/// before) made the statement exponential in the number of paths. The
/// subquery that names it carries `OFFSET 0` so the planner does not pull
/// it up, which would inline the expression again (measured: 5 s to plan
/// ten three-key paths without it, 3 ms with it).
const DOCUMENT: &str = "reposmith_doc";

/// `path` as a bound `text[]`.
fn text_array(path: &[String]) -> Expr {
    let keys = path.iter().map(|k| Value::Text(k.clone())).collect();
    Expr::val(array_of(keys, &ColumnType::Text))
}

/// `jsonb_set(d, '{k1}', jsonb_set(COALESCE(d #> '{k1}', '{}'), '{k2}', ..), true)`:
/// sets `value` at `path` in the document `d` that `document` renders,
/// creating the objects missing on the way (a single `jsonb_set` leaves
/// the document unchanged when an intermediate key is missing). A scalar
/// or JSON null on the way is an error from the server. `document` is
/// rendered once per key.
fn json_set(document: impl Fn() -> Expr, path: &[String], value: Expr) -> Expr {
    let mut inner = value;
    for depth in (0..path.len()).rev() {
        let at = match depth {
            0 => document(),
            _ => Expr::cust_with_exprs(
                "COALESCE($1 #> $2, '{}'::jsonb)",
                [document(), text_array(&path[..depth])],
            ),
        };
        let key = text_array(&path[depth..=depth]);
        inner = Expr::cust_with_exprs("jsonb_set($1, $2, $3, true)", [at, key, inner]);
    }
    inner
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
    // A tenant entity's repository without a tenant refuses before anything is sent.
    repo.scope.check()?;
    let expected = expected_version(schema, expected)?;
    let id_value = id.to_value();
    check_value(schema.entity, schema.id_column().field, &id_value)?;
    let id_def = schema.id_column();
    let mut update = update_of(schema, parts, repo.clock().now())?;
    update.and_where(col(id_def).eq(val(id_def, id_value.clone())));
    // The repository's row scope (live rows, unless the `with_deleted` view).
    if !repo.scope.is_empty() {
        update.and_where(filter_expr(schema, &repo.scope.node())?);
    }
    if let Some((i, version)) = &expected {
        let def = &schema.columns[*i];
        update.and_where(col(def).eq(val(def, version.clone())));
    }
    let ranges = add_ranges(schema, parts);
    for range in &ranges {
        update.and_where(in_range(schema, range));
    }
    update.returning(returning(schema));
    let query = bound(repo, &update)?;
    let row = repo
        .exec
        .write(schema, |held| Box::pin(query.fetch_optional(&mut **held)))
        .await
        .map_err(|e| server_refusal(schema, parts, e))?;
    record_rows(u64::from(row.is_some()));
    match row {
        Some(row) => repo.entity(&row),
        None => Err(miss(repo, id_value, expected, &ranges).await?),
    }
}

/// `(col IS NULL OR col BETWEEN low AND high)`: the add keeps `col` in its
/// type (NULL + delta stays NULL).
fn in_range(schema: &EntitySchema, range: &AddRange) -> Expr {
    let def = &schema.columns[range.column];
    let bound = |n| val(def, Value::integer_of(n, &def.ty).unwrap_or(Value::I64(n)));
    let inside = col(def).between(bound(range.low), bound(range.high));
    col(def).is_null().or(inside)
}

/// Why a patch matched no row, from the row as it is now (on the primary:
/// the write that missed ran there): see [`patch_miss`].
async fn miss<E: Entity>(
    repo: &PgRepository<E>,
    id: Value,
    expected: Option<(usize, Value)>,
    ranges: &[AddRange],
) -> Result<Error> {
    let schema = E::SCHEMA;
    let columns: Vec<usize> = expected
        .iter()
        .map(|(i, _)| *i)
        .chain(ranges.iter().map(|r| r.column))
        .collect();
    let id_def = schema.id_column();
    let mut select = Query::select();
    select.expr(Expr::val(1)).from(table(schema));
    for &i in &columns {
        select.column(schema.columns[i].name);
    }
    select.and_where(col(id_def).eq(val(id_def, id.clone())));
    if !repo.scope.is_empty() {
        select.and_where(filter_expr(schema, &repo.scope.node())?);
    }
    let (sql, values) = select.build(PostgresQueryBuilder);
    let sql: std::sync::Arc<str> = sql.into();
    let primary = Route::primary();
    let row = repo
        .exec
        .read(&primary, schema, |held| {
            Box::pin(statement(&sql, values.0.clone()).fetch_optional(&mut **held))
        })
        .await?;
    let stored = match row {
        Some(row) => Some(
            columns
                .iter()
                .enumerate()
                .map(|(at, &i)| {
                    let value = decode_column(schema, i, &row, at + 1)?;
                    Ok((i, value.as_integer()))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    Ok(patch_miss(
        schema,
        id_text(&id),
        expected.as_ref(),
        ranges,
        stored.as_deref(),
    ))
}

/// The server's refusal of an update as the typed error both backends
/// give: a `json_set` through a scalar (SQLSTATE 22023, "cannot set path
/// in scalar") names the field and path ([`json_path_through_scalar`]);
/// an `add` out of range names the field ([`name_add_overflow`]).
fn server_refusal(schema: &EntitySchema, parts: &Parts, error: Error) -> Error {
    match &error {
        Error::Backend {
            code: Some(code), ..
        } if code == "22023" => json_path_through_scalar(schema, parts).unwrap_or(error),
        _ => name_add_overflow(schema, parts, error),
    }
}

/// A value out of its type's range (SQLSTATE 22003) from an
/// `update_where`, which the server reports without a column (the error
/// names the generic "value"): it came from an `add` (a `set` value was
/// checked against its type before sending), so the error names the
/// fields `parts` adds to.
fn name_add_overflow(schema: &EntitySchema, parts: &Parts, error: Error) -> Error {
    let adds: Vec<&str> = parts
        .iter()
        .filter(|(_, op)| matches!(op, AssignOp::Add(_)))
        .map(|(column, _)| schema.columns[*column].field)
        .collect();
    match error {
        Error::InvalidInput {
            entity,
            field,
            reason,
            row,
        } if field == "value" && reason.contains("out of range") && !adds.is_empty() => {
            Error::InvalidInput {
                entity,
                field: adds.join(" or "),
                reason: format!("adding to it leaves its type's range: {reason}"),
                row,
            }
        }
        other => other,
    }
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
    let mut update = update_of(schema, parts, repo.clock().now())?;
    update.and_where(filter_expr(schema, repo.scoped(filter)?.node())?);
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
    let named = |e| server_refusal(schema, parts, e);
    if matches!(returned, Returned::Count) {
        let done = repo
            .exec
            .write(schema, |held| Box::pin(query.execute(&mut **held)))
            .await
            .map_err(named)?;
        record_rows(done.rows_affected());
        return Ok((done.rows_affected(), Vec::new(), Vec::new()));
    }
    let rows = repo
        .exec
        .write(schema, |held| Box::pin(query.fetch_all(&mut **held)))
        .await
        .map_err(named)?;
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
