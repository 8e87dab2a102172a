//! Keyset pagination: the total order of a query and the "after this row"
//! predicate.
//!
//! The order is the caller's sort keys followed by the id, ascending, so two
//! rows never tie and a page boundary is exact. Ascending keys sort NULLs
//! last and descending keys NULLs first, as `Column::asc`/`desc` document.
//!
//! When every key has the same direction and none is nullable, "after" is a
//! row-value comparison `(a, b) > ($1, $2)` that a composite index serves
//! directly; otherwise it expands to
//! `k1 ≻ v1 OR (k1 = v1 AND k2 ≻ v2) OR ...`, where `≻` means "comes after
//! in this key's direction, NULL placement included".

use reposmith_core::{ColumnDef, ColumnType, Cursor, EntitySchema, Error, Order, Result, Value};
use sea_query::{Expr, ExprTrait, NullOrdering, Order as SqOrder, SelectStatement};

use crate::render::{col, val};

/// One key of the total order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SortKey {
    /// Position in the schema.
    pub(crate) index: usize,
    /// The column.
    pub(crate) column: &'static ColumnDef,
    /// Descending, NULLs first.
    pub(crate) descending: bool,
}

/// The caller's keys with the id appended ascending.
pub(crate) fn sort_keys<E>(
    schema: &'static EntitySchema,
    order: &[Order<E>],
) -> Result<Vec<SortKey>> {
    let mut keys = Vec::with_capacity(order.len() + 1);
    for o in order {
        let column = schema.columns.get(o.column()).ok_or_else(|| {
            Error::invalid(
                schema.entity,
                "order",
                format!("no column at position {}", o.column()),
            )
        })?;
        if !column.ty.is_ordered() {
            return Err(Error::invalid(
                schema.entity,
                column.field,
                "cannot sort by this type",
            ));
        }
        keys.push(SortKey {
            index: o.column(),
            column,
            descending: o.is_descending(),
        });
    }
    let id = schema.id_column();
    keys.push(SortKey {
        index: schema.id,
        column: id,
        descending: false,
    });
    Ok(keys)
}

/// Adds `ORDER BY` for `keys`.
pub(crate) fn order_by(select: &mut SelectStatement, keys: &[SortKey]) {
    for key in keys {
        let (order, nulls) = if key.descending {
            (SqOrder::Desc, NullOrdering::First)
        } else {
            (SqOrder::Asc, NullOrdering::Last)
        };
        select.order_by_with_nulls(key.column.name, order, nulls);
    }
}

/// The cursor after a row whose schema-ordered values are `row`.
pub(crate) fn cursor_of(keys: &[SortKey], row: &[Value]) -> Cursor {
    let values: Vec<Value> = keys.iter().map(|k| row[k.index].clone()).collect();
    Cursor::encode(&values)
}

/// The sort-key values a client's cursor holds, checked against the key types.
pub(crate) fn decode_cursor(
    schema: &EntitySchema,
    keys: &[SortKey],
    cursor: &Cursor,
) -> Result<Vec<Value>> {
    let types: Vec<ColumnType> = keys.iter().map(|k| k.column.ty).collect();
    let values = cursor.decode(schema.entity, &types)?;
    for (key, value) in keys.iter().zip(&values) {
        if *value == Value::Null && !key.column.nullable {
            return Err(Error::invalid(
                schema.entity,
                "cursor",
                "a non-null sort key is null",
            ));
        }
    }
    Ok(values)
}

/// Rows strictly after the row whose sort-key values are `values`.
pub(crate) fn after(keys: &[SortKey], values: Vec<Value>) -> Expr {
    let same_direction = keys.iter().all(|k| k.descending == keys[0].descending);
    if same_direction && keys.iter().all(|k| !k.column.nullable) {
        return row_comparison(keys, values);
    }
    let mut branches: Vec<Expr> = Vec::new();
    let mut equal_prefix: Vec<Expr> = Vec::new();
    for (key, value) in keys.iter().zip(values) {
        if let Some(step) = comes_after(key, &value) {
            let branch = equal_prefix
                .iter()
                .cloned()
                .fold(step, |acc, eq| eq.and(acc));
            branches.push(branch);
        }
        equal_prefix.push(equals(key, value));
    }
    branches
        .into_iter()
        .reduce(|acc, b| acc.or(b))
        .unwrap_or_else(|| Expr::cust("FALSE"))
}

fn row_comparison(keys: &[SortKey], values: Vec<Value>) -> Expr {
    let columns = Expr::tuple(keys.iter().map(|k| col(k.column)));
    let values = Expr::tuple(keys.iter().zip(values).map(|(k, v)| val(k.column, v)));
    if keys[0].descending {
        columns.lt(values)
    } else {
        columns.gt(values)
    }
}

/// The key equals `value`, NULL included (`IS NULL` for a NULL cursor value).
fn equals(key: &SortKey, value: Value) -> Expr {
    match value {
        Value::Null => col(key.column).is_null(),
        value => col(key.column).eq(val(key.column, value)),
    }
}

/// Rows whose key sorts after `value`; `None` when none can (a NULL in an ascending key,
/// where NULLs come last).
fn comes_after(key: &SortKey, value: &Value) -> Option<Expr> {
    let c = col(key.column);
    match (key.descending, value) {
        (false, Value::Null) => None,
        (true, Value::Null) => Some(c.is_not_null()),
        (false, v) if key.column.nullable => {
            Some(c.clone().gt(val(key.column, v.clone())).or(c.is_null()))
        }
        (false, v) => Some(c.gt(val(key.column, v.clone()))),
        (true, v) => Some(c.lt(val(key.column, v.clone()))),
    }
}
