//! Ordering and keyset pagination, with the same total order as Postgres:
//! the caller's sort keys, then the id ascending; ascending keys put NULLs
//! last and descending keys put them first.
//!
//! MongoDB sorts null *before* every value, so a nullable key gets a
//! computed companion `__rs_null_<i>` (`true` for null or missing, from
//! `{$lte: ["$k", null]}`, null being the smallest BSON value) sorted in the
//! key's own direction just before it. Such a query then runs as an
//! aggregation: `$match`, `$addFields`, `$sort`, `$limit`; one without a
//! nullable key is a plain `find` with `sort` and `limit` (cheaper on the
//! server, and what an index on the sort keys serves directly).
//!
//! "After this row" expands to `k1 ≻ v1 OR (k1 = v1 AND k2 ≻ v2) OR ...`,
//! where `≻` means "comes after in this key's direction, NULL placement included".

use mongodb::bson::{Bson, Document, doc};
use reposmith_core::{ColumnDef, ColumnType, Cursor, EntitySchema, Error, Order, Result, Value};

use crate::codec::{key, to_bson};
use crate::render::{nothing, op};

/// One key of the total order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SortKey {
    /// Position in the schema.
    pub(crate) index: usize,
    /// Document key.
    pub(crate) key: &'static str,
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
            key: key(schema, o.column()),
            column,
            descending: o.is_descending(),
        });
    }
    keys.push(SortKey {
        index: schema.id,
        key: "_id",
        column: schema.id_column(),
        descending: false,
    });
    Ok(keys)
}

fn null_flag(i: usize) -> String {
    format!("__rs_null_{i}")
}

/// The `$addFields` stage computing the null flags, when a key is nullable.
pub(crate) fn null_flags(keys: &[SortKey]) -> Option<Document> {
    let mut fields = Document::new();
    for (i, k) in keys.iter().enumerate().filter(|(_, k)| k.column.nullable) {
        fields.insert(
            null_flag(i),
            doc! { "$lte": [format!("${}", k.key), Bson::Null] },
        );
    }
    (!fields.is_empty()).then(|| doc! { "$addFields": fields })
}

/// The `$sort` specification for `keys`.
pub(crate) fn sort_spec(keys: &[SortKey]) -> Document {
    let mut spec = Document::new();
    for (i, k) in keys.iter().enumerate() {
        let direction = if k.descending { -1 } else { 1 };
        if spec.contains_key(k.key) {
            // An earlier key on the same column already decides; a later one cannot.
            continue;
        }
        if k.column.nullable {
            // true (null) sorts after false: last ascending, first descending.
            spec.insert(null_flag(i), direction);
        }
        spec.insert(k.key, direction);
    }
    spec
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
pub(crate) fn after(schema: &EntitySchema, keys: &[SortKey], values: &[Value]) -> Result<Document> {
    let mut branches = Vec::new();
    let mut equal_prefix: Vec<Bson> = Vec::new();
    for (k, value) in keys.iter().zip(values) {
        let v = to_bson(schema.entity, k.column.field, value)?;
        if let Some(step) = comes_after(k, &v) {
            let mut all = equal_prefix.clone();
            all.push(Bson::Document(step));
            branches.push(Bson::Document(doc! { "$and": all }));
        }
        // `$eq: null` also matches a missing key, which sorts with null.
        equal_prefix.push(Bson::Document(op(k.key, "$eq", v)));
    }
    Ok(if branches.is_empty() {
        nothing()
    } else {
        doc! { "$or": branches }
    })
}

/// Rows whose key sorts after `v`; `None` when none can (a NULL in an
/// ascending key, where NULLs come last).
fn comes_after(k: &SortKey, v: &Bson) -> Option<Document> {
    match (k.descending, v) {
        (false, Bson::Null) => None,
        (true, Bson::Null) => Some(op(k.key, "$ne", Bson::Null)),
        (false, v) if k.column.nullable => {
            Some(doc! { "$or": [op(k.key, "$gt", v.clone()), op(k.key, "$eq", Bson::Null)] })
        }
        (false, v) => Some(op(k.key, "$gt", v.clone())),
        (true, v) => Some(op(k.key, "$lt", v.clone())),
    }
}
