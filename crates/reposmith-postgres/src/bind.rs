//! Values on their way to and from the wire: [`reposmith_core::Value`] into
//! sea-query's `Value` (so the statement builder numbers the placeholders),
//! sea-query values bound onto sqlx queries, and result rows decoded back
//! into core values by the schema's column types.
//!
//! Nothing here writes a value into SQL text: every value becomes a bound
//! parameter.

use chrono::{DateTime, NaiveDate, Utc};
use reposmith_core::value::{DecodeError, fit_integer};
use reposmith_core::{ColumnDef, ColumnType, EntitySchema, Error, Result, Value};
use sea_query::{ArrayType, Value as SqValue};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Column, Postgres, Row, TypeInfo};
use uuid::Uuid;

/// A sqlx query whose arguments are being bound.
pub(crate) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// The sea-query value for `value` stored in a column of type `ty`; the type
/// matters only for NULL, which must still be a typed parameter.
pub(crate) fn to_sea(value: Value, ty: &ColumnType) -> SqValue {
    match value {
        Value::Null => null_of(ty),
        Value::Bool(b) => SqValue::Bool(Some(b)),
        Value::I16(n) => SqValue::SmallInt(Some(n)),
        Value::I32(n) => SqValue::Int(Some(n)),
        Value::I64(n) => SqValue::BigInt(Some(n)),
        Value::F32(n) => SqValue::Float(Some(n)),
        Value::F64(n) => SqValue::Double(Some(n)),
        Value::Text(s) => SqValue::String(Some(s)),
        Value::Uuid(u) => SqValue::Uuid(Some(u)),
        // Stored as its hex text, which sorts like the bytes.
        Value::ObjectId(o) => SqValue::String(Some(o.to_hex())),
        Value::TimestampTz(t) => SqValue::ChronoDateTimeUtc(Some(t)),
        Value::Date(d) => SqValue::ChronoDate(Some(d)),
        Value::Json(j) => SqValue::Json(Some(Box::new(j))),
        Value::Array(items) => array_of(items, element_type(ty)),
        vector @ (Value::Vector(_)
        | Value::HalfVector(_)
        | Value::SparseVector(_)
        | Value::Bit(_)) => match ty {
            ColumnType::Vector(kind) => crate::vector::to_carrier(*kind, Some(&vector)),
            _ => null_of(ty),
        },
        // `Value` is non-exhaustive; a variant this backend does not know is stored as NULL
        // of the column's type rather than guessed at.
        _ => null_of(ty),
    }
}

/// A one-dimensional array parameter of `ty` elements.
pub(crate) fn array_of(items: Vec<Value>, ty: &ColumnType) -> SqValue {
    let items: Vec<SqValue> = items.into_iter().map(|v| to_sea(v, ty)).collect();
    SqValue::Array(array_type(ty), Some(Box::new(items)))
}

fn element_type(ty: &ColumnType) -> &ColumnType {
    match ty {
        ColumnType::Array(inner) => inner,
        other => other,
    }
}

/// A typed NULL: Postgres infers the parameter type from the value sqlx sends.
fn null_of(ty: &ColumnType) -> SqValue {
    match ty {
        ColumnType::Text | ColumnType::Enum(_) => SqValue::String(None),
        ColumnType::Bool => SqValue::Bool(None),
        ColumnType::SmallInt => SqValue::SmallInt(None),
        ColumnType::Int => SqValue::Int(None),
        ColumnType::BigInt => SqValue::BigInt(None),
        ColumnType::Real => SqValue::Float(None),
        ColumnType::Double => SqValue::Double(None),
        ColumnType::Uuid => SqValue::Uuid(None),
        ColumnType::ObjectId => SqValue::String(None),
        ColumnType::TimestampTz => SqValue::ChronoDateTimeUtc(None),
        ColumnType::Date => SqValue::ChronoDate(None),
        ColumnType::Array(inner) => SqValue::Array(array_type(inner), None),
        ColumnType::Vector(kind) => crate::vector::to_carrier(*kind, None),
        _ => SqValue::Json(None),
    }
}

fn array_type(ty: &ColumnType) -> ArrayType {
    match ty {
        ColumnType::Text | ColumnType::Enum(_) => ArrayType::String,
        ColumnType::Bool => ArrayType::Bool,
        ColumnType::SmallInt => ArrayType::SmallInt,
        ColumnType::Int => ArrayType::Int,
        ColumnType::BigInt => ArrayType::BigInt,
        ColumnType::Real => ArrayType::Float,
        ColumnType::Double => ArrayType::Double,
        ColumnType::Uuid => ArrayType::Uuid,
        ColumnType::ObjectId => ArrayType::String,
        ColumnType::TimestampTz => ArrayType::ChronoDateTimeUtc,
        ColumnType::Date => ArrayType::ChronoDate,
        _ => ArrayType::Json,
    }
}

/// Bytes `values` take in a Bind message: for each, a 4-byte length word
/// and its binary form, as sqlx sends it (see
/// [`PgConfig::max_bind_bytes`](field@crate::PgConfig::max_bind_bytes)).
pub(crate) fn bound_size(values: &[SqValue]) -> usize {
    values.iter().map(|v| 4 + data_size(v)).sum()
}

/// Bytes the core `value`, bound to a column of type `ty`, takes in a Bind
/// message: [`bound_size`] of its `to_sea` form, without copying the value.
pub(crate) fn value_bound_size(value: &Value, ty: &ColumnType) -> usize {
    4 + match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::I16(_) => 2,
        Value::I32(_) | Value::F32(_) | Value::Date(_) => 4,
        Value::I64(_) | Value::F64(_) | Value::TimestampTz(_) => 8,
        Value::Uuid(_) => 16,
        Value::Text(s) => s.len(),
        Value::ObjectId(_) => 24,
        Value::Json(json) => 1 + json_len(json),
        Value::Array(items) => {
            let ty = element_type(ty);
            20 + items
                .iter()
                .map(|item| value_bound_size(item, ty))
                .sum::<usize>()
        }
        vector => crate::vector::wire(vector).map_or(0, |wire| wire.len()),
    }
}

/// The binary form's bytes of one bound value (0 for NULL).
fn data_size(value: &SqValue) -> usize {
    /// `width` bytes when present.
    fn fixed<T>(v: &Option<T>, width: usize) -> usize {
        v.as_ref().map_or(0, |_| width)
    }
    match value {
        SqValue::Bool(v) => fixed(v, 1),
        SqValue::SmallInt(v) => fixed(v, 2),
        SqValue::Int(v) => fixed(v, 4),
        SqValue::ChronoDate(v) => fixed(v, 4),
        SqValue::Float(v) => fixed(v, 4),
        SqValue::BigInt(v) => fixed(v, 8),
        SqValue::Double(v) => fixed(v, 8),
        SqValue::ChronoDateTimeUtc(v) => fixed(v, 8),
        // LIMIT and OFFSET: bound as bigint (see `bind`).
        SqValue::BigUnsigned(v) => fixed(v, 8),
        SqValue::Unsigned(v) => fixed(v, 8),
        SqValue::Uuid(v) => fixed(v, 16),
        SqValue::String(v) => v.as_ref().map_or(0, String::len),
        // jsonb's binary form: a version byte, then the JSON text.
        SqValue::Json(v) => v.as_ref().map_or(0, |json| 1 + json_len(json)),
        // The vector carrier's two tag bytes are not sent (see `crate::vector`).
        SqValue::Bytes(v) => v.as_ref().map_or(0, |bytes| match bytes.get(1) {
            Some(1) => bytes.len() - 2,
            _ => 0,
        }),
        // Dimensions, flags, element type, then length and lower bound of the one dimension.
        SqValue::Array(_, items) => items
            .as_ref()
            .map_or(0, |items| 20 + bound_size(items.as_slice())),
        // Only the variants `to_sea` produces are bound (see `bind`).
        _ => 0,
    }
}

/// The length of `json`'s compact text, counted without writing it out.
fn json_len(json: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `serde_json::Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, json);
    count.0
}

/// PostgreSQL's limit on the parameters of one statement: the protocol's
/// Bind message counts them in 16 bits, so a longer list would be sent
/// truncated and fail as a protocol error, indistinguishable from a lost
/// connection.
pub(crate) const MAX_BINDS: usize = 65_535;

/// Refuses `values`, the parameters of one statement on `entity`'s table,
/// when there are more than [`MAX_BINDS`] of them ([`Error::InvalidInput`]
/// naming the entity and the count: a filter of that many conditions wants
/// `is_in`, which binds one array) or they bind more than `limit` bytes
/// ([`Error::TooLarge`], naming the largest value through `name_of`, which
/// maps a value's position to the field it holds when the caller knows it).
pub(crate) fn check_bound_size<'n>(
    limit: usize,
    entity: &'static str,
    values: &[SqValue],
    name_of: impl Fn(usize) -> Option<&'n str>,
) -> Result<()> {
    if values.len() > MAX_BINDS {
        return Err(Error::invalid(
            entity,
            "parameters",
            format!(
                "one statement would bind {} values; PostgreSQL takes at most {MAX_BINDS} \
                 (a filter of many conditions on one field can be one `is_in`, which binds \
                 a single array)",
                values.len()
            ),
        ));
    }
    let size = bound_size(values);
    if size <= limit {
        return Ok(());
    }
    let largest = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i, 4 + data_size(v)))
        .max_by_key(|&(_, bytes)| bytes);
    let detail = match largest {
        Some((i, bytes)) => match name_of(i) {
            Some(field) => format!(" (the largest, `{field}`, takes {bytes} bytes)"),
            None => format!(" (the largest, parameter ${}, takes {bytes} bytes)", i + 1),
        },
        None => String::new(),
    };
    Err(Error::TooLarge {
        what: format!("the values bound to one statement on {entity}{detail}"),
        size,
        limit,
    })
}

/// Binds every value sea-query collected, in placeholder order.
pub(crate) fn bind_all(mut query: PgQuery<'_>, values: sea_query::Values) -> PgQuery<'_> {
    for value in values.0 {
        query = bind(query, value);
    }
    query
}

fn bind(query: PgQuery<'_>, value: SqValue) -> PgQuery<'_> {
    match value {
        SqValue::Bool(v) => query.bind(v),
        SqValue::SmallInt(v) => query.bind(v),
        SqValue::Int(v) => query.bind(v),
        SqValue::BigInt(v) => query.bind(v),
        SqValue::Float(v) => query.bind(v),
        SqValue::Double(v) => query.bind(v),
        SqValue::String(v) => query.bind(v),
        // LIMIT and OFFSET arrive as u64; Postgres has no unsigned types.
        SqValue::BigUnsigned(v) => query.bind(v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))),
        SqValue::Unsigned(v) => query.bind(v.map(i64::from)),
        SqValue::Uuid(v) => query.bind(v),
        SqValue::ChronoDateTimeUtc(v) => query.bind(v),
        SqValue::ChronoDate(v) => query.bind(v),
        SqValue::Json(v) => query.bind(v.map(|j| *j)),
        SqValue::Array(ty, items) => bind_array(query, ty, items.map(|b| *b)),
        // Only vectors travel as bytes (see `crate::vector`).
        SqValue::Bytes(bytes) => query.bind(crate::vector::from_carrier(bytes)),
        // Only the variants `to_sea` produces reach here; anything else is a bug
        // caught by the tests, bound as an untyped NULL rather than panicking.
        _ => query.bind(None::<String>),
    }
}

/// Elements of a sea-query array as `Option<T>`s.
fn elements<T>(items: Vec<SqValue>, pick: impl Fn(SqValue) -> Option<T>) -> Vec<Option<T>> {
    items.into_iter().map(pick).collect()
}

fn bind_array(query: PgQuery<'_>, ty: ArrayType, items: Option<Vec<SqValue>>) -> PgQuery<'_> {
    macro_rules! arr {
        ($variant:ident) => {
            query.bind(items.map(|items| {
                elements(items, |v| match v {
                    SqValue::$variant(inner) => inner,
                    _ => None,
                })
            }))
        };
    }
    match ty {
        ArrayType::Bool => arr!(Bool),
        ArrayType::SmallInt => arr!(SmallInt),
        ArrayType::Int => arr!(Int),
        ArrayType::BigInt => arr!(BigInt),
        ArrayType::Float => arr!(Float),
        ArrayType::Double => arr!(Double),
        ArrayType::Uuid => arr!(Uuid),
        ArrayType::ChronoDateTimeUtc => arr!(ChronoDateTimeUtc),
        ArrayType::ChronoDate => arr!(ChronoDate),
        ArrayType::Json => query.bind(items.map(|items| {
            elements(items, |v| match v {
                SqValue::Json(inner) => inner.map(|j| *j),
                _ => None,
            })
        })),
        _ => arr!(String),
    }
}

/// Reads every schema column of `row`, in schema order.
///
/// An integer column is read at the width the server sent and then fitted
/// to the field's type ([`reposmith_core::value::fit_integer`]): an `i64`
/// field reads an `integer` or `smallint` column, and an `i32` field reads a
/// `bigint` column as long as each value fits; one that does not is
/// [`Error::Decode`] naming the column, the value and the field's range.
pub(crate) fn decode_row(schema: &EntitySchema, row: &PgRow) -> Result<Vec<Value>> {
    decode_row_as(schema, row, &mut RowLayout::of(row, schema.columns.len()))
}

/// What one statement's rows share, learnt as they are read: the integer
/// width the server sent for each column (`None` for one that is not an
/// integer or integer array), read from the first row, and whether the
/// column's type has been compared with the field's yet.
///
/// sqlx's `try_get` compares the types for every non-NULL cell, but every
/// row of one statement has the same column types: a large result compares
/// each column once, on its first non-NULL value, and reads the rest
/// unchecked.
pub(crate) struct RowLayout {
    stored: Vec<Option<ColumnType>>,
    verified: Vec<bool>,
}

impl RowLayout {
    /// The layout of `row`'s first `columns` columns.
    pub(crate) fn of(row: &PgRow, columns: usize) -> Self {
        RowLayout {
            stored: (0..columns).map(|i| stored_integer(row, i)).collect(),
            verified: vec![false; columns],
        }
    }
}

/// [`decode_row`] for a row of a result whose layout is `layout`.
pub(crate) fn decode_row_as(
    schema: &EntitySchema,
    row: &PgRow,
    layout: &mut RowLayout,
) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(schema.columns.len());
    for (i, c) in schema.columns.iter().enumerate() {
        let stored = layout.stored.get(i).copied().flatten();
        let verified = layout.verified.get(i).copied().unwrap_or(false);
        let value =
            decode_stored(row, i, c, stored, !verified).map_err(|source| Error::Decode {
                entity: schema.entity,
                field: c.field,
                source,
            })?;
        // NULL carries no type to compare: the next value is checked.
        if !verified && !matches!(value, Value::Null) {
            layout.verified[i] = true;
        }
        values.push(value);
    }
    Ok(values)
}

/// Column `at` of `row` read as schema column `column` (a `RETURNING`
/// list rather than a full row).
pub(crate) fn decode_column(
    schema: &EntitySchema,
    column: usize,
    row: &PgRow,
    at: usize,
) -> Result<Value> {
    let c = &schema.columns[column];
    decode(row, at, c).map_err(|source| Error::Decode {
        entity: schema.entity,
        field: c.field,
        source,
    })
}

/// A sqlx decoding failure as a core decode error.
fn mismatch(e: sqlx::Error) -> DecodeError {
    DecodeError {
        expected: "the column's type",
        found: e.to_string(),
    }
}

/// The integer type of the server's column `i` (`smallint`, `integer`,
/// `bigint`, or an array of one of them), when it is one.
fn stored_integer(row: &PgRow, i: usize) -> Option<ColumnType> {
    let info = row.columns().get(i)?.type_info();
    Some(match info.name() {
        "INT2" | "INT2[]" => ColumnType::SmallInt,
        "INT4" | "INT4[]" => ColumnType::Int,
        "INT8" | "INT8[]" => ColumnType::BigInt,
        _ => return None,
    })
}

/// Reads an integer column `i` stored as `stored` into the field's integer
/// type `ty`, checked.
fn decode_integer(
    row: &PgRow,
    i: usize,
    column: &ColumnDef,
    (stored, ty): (&ColumnType, &ColumnType),
    checked: bool,
) -> std::result::Result<Value, DecodeError> {
    let n = match stored {
        ColumnType::SmallInt => cell::<Option<i16>>(row, i, checked).map(|n| n.map(i64::from)),
        ColumnType::Int => cell::<Option<i32>>(row, i, checked).map(|n| n.map(i64::from)),
        _ => cell::<Option<i64>>(row, i, checked),
    }
    .map_err(mismatch)?;
    n.map_or(Ok(Value::Null), |n| fit_integer(n, ty, column.name))
}

/// An integer array column `i` stored with `stored` elements, each fitted
/// to the field's element type `ty`.
fn decode_integer_array(
    row: &PgRow,
    i: usize,
    column: &ColumnDef,
    (stored, ty): (&ColumnType, &ColumnType),
    checked: bool,
) -> std::result::Result<Value, DecodeError> {
    fn widen<T: Into<i64>>(items: Option<Vec<Option<T>>>) -> Option<Vec<Option<i64>>> {
        items.map(|items| items.into_iter().map(|n| n.map(Into::into)).collect())
    }
    let items = match stored {
        ColumnType::SmallInt => cell::<Option<Vec<Option<i16>>>>(row, i, checked).map(widen),
        ColumnType::Int => cell::<Option<Vec<Option<i32>>>>(row, i, checked).map(widen),
        _ => cell::<Option<Vec<Option<i64>>>>(row, i, checked),
    }
    .map_err(mismatch)?;
    let Some(items) = items else {
        return Ok(Value::Null);
    };
    items
        .into_iter()
        .map(|n| n.map_or(Ok(Value::Null), |n| fit_integer(n, ty, column.name)))
        .collect::<std::result::Result<_, _>>()
        .map(Value::Array)
}

/// One column as a core value of the column's schema type.
pub(crate) fn decode(
    row: &PgRow,
    i: usize,
    column: &ColumnDef,
) -> std::result::Result<Value, DecodeError> {
    decode_stored(row, i, column, stored_integer(row, i), true)
}

/// Cell `i` of `row` as `T`; `checked` compares the server's type with
/// `T`'s first (see [`decode_row_as`]).
fn cell<T>(row: &PgRow, i: usize, checked: bool) -> sqlx::Result<T>
where
    T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    match checked {
        true => row.try_get(i),
        false => row.try_get_unchecked(i),
    }
}

/// [`decode`] with the column's stored integer width already known.
fn decode_stored(
    row: &PgRow,
    i: usize,
    column: &ColumnDef,
    stored: Option<ColumnType>,
    checked: bool,
) -> std::result::Result<Value, DecodeError> {
    fn get<T, F>(row: &PgRow, i: usize, checked: bool, wrap: F) -> sqlx::Result<Value>
    where
        T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
        F: Fn(T) -> Value,
    {
        Ok(cell::<Option<T>>(row, i, checked)?.map_or(Value::Null, wrap))
    }
    let ty = &column.ty;
    match ty {
        ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt => {
            let stored = stored.unwrap_or(*ty);
            return decode_integer(row, i, column, (&stored, ty), checked);
        }
        ColumnType::Array(
            inner @ (ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt),
        ) => {
            let stored = stored.unwrap_or(**inner);
            return decode_integer_array(row, i, column, (&stored, inner), checked);
        }
        _ => {}
    }
    match ty {
        ColumnType::Text | ColumnType::Enum(_) => get::<String, _>(row, i, checked, Value::Text),
        ColumnType::Bool => get::<bool, _>(row, i, checked, Value::Bool),
        ColumnType::Real => get::<f32, _>(row, i, checked, Value::F32),
        ColumnType::Double => get::<f64, _>(row, i, checked, Value::F64),
        ColumnType::Uuid => get::<Uuid, _>(row, i, checked, Value::Uuid),
        ColumnType::ObjectId => get::<String, _>(row, i, checked, object_id),
        ColumnType::TimestampTz => get::<DateTime<Utc>, _>(row, i, checked, Value::TimestampTz),
        ColumnType::Date => get::<NaiveDate, _>(row, i, checked, Value::Date),
        ColumnType::Array(inner) => decode_array(row, i, inner, checked),
        ColumnType::Vector(kind) => decode_vector(row, i, *kind, checked),
        _ => get::<serde_json::Value, _>(row, i, checked, Value::Json),
    }
    .map_err(mismatch)
}

fn decode_vector(
    row: &PgRow,
    i: usize,
    kind: reposmith_core::VectorKind,
    checked: bool,
) -> sqlx::Result<Value> {
    use reposmith_core::VectorKind;
    fn get<T, F>(row: &PgRow, i: usize, checked: bool, wrap: F) -> sqlx::Result<Value>
    where
        T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
        F: Fn(T) -> Value,
    {
        Ok(cell::<Option<T>>(row, i, checked)?.map_or(Value::Null, wrap))
    }
    match kind {
        VectorKind::Half => get::<pgvector::HalfVector, _>(row, i, checked, Value::HalfVector),
        VectorKind::Sparse => {
            get::<pgvector::SparseVector, _>(row, i, checked, Value::SparseVector)
        }
        VectorKind::Bit => get::<pgvector::Bit, _>(row, i, checked, Value::Bit),
        _ => get::<pgvector::Vector, _>(row, i, checked, Value::Vector),
    }
}

fn decode_array(row: &PgRow, i: usize, ty: &ColumnType, checked: bool) -> sqlx::Result<Value> {
    fn get<T, F>(row: &PgRow, i: usize, checked: bool, wrap: F) -> sqlx::Result<Value>
    where
        T: for<'r> sqlx::Decode<'r, Postgres>
            + sqlx::Type<Postgres>
            + sqlx::postgres::PgHasArrayType,
        F: Fn(T) -> Value,
    {
        let items = cell::<Option<Vec<Option<T>>>>(row, i, checked)?;
        Ok(items.map_or(Value::Null, |items| {
            Value::Array(
                items
                    .into_iter()
                    .map(|v| v.map_or(Value::Null, &wrap))
                    .collect(),
            )
        }))
    }
    match ty {
        ColumnType::Text | ColumnType::Enum(_) => get::<String, _>(row, i, checked, Value::Text),
        ColumnType::Bool => get::<bool, _>(row, i, checked, Value::Bool),
        ColumnType::SmallInt => get::<i16, _>(row, i, checked, Value::I16),
        ColumnType::Int => get::<i32, _>(row, i, checked, Value::I32),
        ColumnType::BigInt => get::<i64, _>(row, i, checked, Value::I64),
        ColumnType::Real => get::<f32, _>(row, i, checked, Value::F32),
        ColumnType::Double => get::<f64, _>(row, i, checked, Value::F64),
        ColumnType::Uuid => get::<Uuid, _>(row, i, checked, Value::Uuid),
        ColumnType::ObjectId => get::<String, _>(row, i, checked, object_id),
        ColumnType::TimestampTz => get::<DateTime<Utc>, _>(row, i, checked, Value::TimestampTz),
        ColumnType::Date => get::<NaiveDate, _>(row, i, checked, Value::Date),
        _ => get::<serde_json::Value, _>(row, i, checked, Value::Json),
    }
}

/// An ObjectId column's text; text that is not one stays text, so reading it
/// into an `ObjectId` field is a decode error naming the field.
fn object_id(text: String) -> Value {
    match text.parse::<reposmith_core::ObjectId>() {
        Ok(id) => Value::ObjectId(id),
        Err(_) => Value::Text(text),
    }
}

/// Whether `ty` is an integer type or an array of one.
fn is_integer(ty: &ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::Array(ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt)
    )
}

/// For each of `columns`, the integer type (or integer array type) the
/// table really has when it is another width than the field's (an `i64`
/// field over an `integer` column, an `i32` one over `bigint`); `None` for
/// every other column.
///
/// Bound parameters need none of this (the server casts them, refusing a
/// value out of the column's range with 22003), but binary COPY sends each
/// value at a fixed width, so it asks. One prepare of `SELECT <integer
/// columns> FROM t LIMIT 0`, cached by the connection like any statement;
/// nothing is asked when no inserted column is an integer.
pub(crate) async fn stored_integer_widths(
    connection: &mut sqlx::PgConnection,
    schema: &EntitySchema,
    columns: &[usize],
) -> sqlx::Result<Vec<Option<ColumnType>>> {
    use sqlx::{Executor, SqlSafeStr, Statement};
    let mut widths = vec![None; columns.len()];
    let integers: Vec<usize> = (0..columns.len())
        .filter(|&k| is_integer(&schema.columns[columns[k]].ty))
        .collect();
    if integers.is_empty() {
        return Ok(widths);
    }
    let names: Vec<String> = integers
        .iter()
        .map(|&k| crate::ddl::quote_ident(schema.columns[columns[k]].name))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} LIMIT 0",
        names.join(", "),
        crate::ddl::table_name(schema)
    );
    // Safe: quoted identifiers from the schema.
    let statement = connection
        .prepare(sqlx::AssertSqlSafe(sql).into_sql_str())
        .await?;
    for (&k, column) in integers.iter().zip(statement.columns()) {
        let stored = match column.type_info().name() {
            "INT2" => ColumnType::SmallInt,
            "INT4" => ColumnType::Int,
            "INT8" => ColumnType::BigInt,
            "INT2[]" => ColumnType::Array(&ColumnType::SmallInt),
            "INT4[]" => ColumnType::Array(&ColumnType::Int),
            "INT8[]" => ColumnType::Array(&ColumnType::BigInt),
            _ => continue,
        };
        if stored != schema.columns[columns[k]].ty {
            widths[k] = Some(stored);
        }
    }
    Ok(widths)
}

/// `value` (an integer, or an array of them) at the integer width `stored`
/// of its column (an integer type or an array of one, as
/// [`stored_integer_widths`] gives it), for a writer that sends exact
/// widths; a number the column cannot hold is refused naming the column and
/// its range.
pub(crate) fn to_stored_width(
    value: &Value,
    stored: &ColumnType,
    column: &ColumnDef,
) -> std::result::Result<Value, String> {
    let stored = match stored {
        ColumnType::Array(inner) => *inner,
        other => other,
    };
    let fit = |n: i64| {
        Value::integer_of(n, stored).ok_or_else(|| {
            let (min, max) = stored.integer_bounds().unwrap_or((i64::MIN, i64::MAX));
            format!(
                "{n} does not fit column \"{}\" ({}: {min}..={max})",
                column.name,
                crate::ddl::sql_type(stored)
            )
        })
    };
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| to_stored_width(item, stored, column))
            .collect::<std::result::Result<_, _>>()
            .map(Value::Array),
        other => match other.as_integer() {
            Some(n) => fit(n),
            None => Ok(other.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use reposmith_core::VectorKind;
    use serde_json::json;

    use super::*;

    static TEXT: ColumnType = ColumnType::Text;

    #[test]
    fn the_measure_counts_a_length_word_and_the_binary_form() {
        let sizes = |values: Vec<(Value, ColumnType)>| {
            let params: Vec<SqValue> = values.into_iter().map(|(v, t)| to_sea(v, &t)).collect();
            bound_size(&params)
        };
        assert_eq!(sizes(vec![(Value::I64(1), ColumnType::BigInt)]), 12);
        assert_eq!(
            sizes(vec![(Value::Text("héllo".into()), ColumnType::Text)]),
            10
        );
        assert_eq!(sizes(vec![(Value::Null, ColumnType::Text)]), 4);
        assert_eq!(
            sizes(vec![(Value::Json(json!({"a": 1})), ColumnType::Json)]),
            4 + 1 + 7
        );
        let array = Value::Array(vec![Value::Text("ab".into()), Value::Null]);
        assert_eq!(
            sizes(vec![(array, ColumnType::Array(&TEXT))]),
            4 + 20 + (4 + 2) + 4
        );
        let vector = Value::Vector(pgvector::Vector::from(vec![1.0, 2.0, 3.0]));
        assert_eq!(
            sizes(vec![(vector, ColumnType::Vector(VectorKind::Dense))]),
            4 + 4 + 3 * 4
        );
    }

    #[test]
    fn the_core_value_measure_agrees_with_the_bound_one() {
        let cases = [
            (Value::Bool(true), ColumnType::Bool),
            (Value::I16(1), ColumnType::SmallInt),
            (Value::I32(1), ColumnType::Int),
            (Value::F64(1.5), ColumnType::Double),
            (Value::Uuid(Uuid::from_u128(1)), ColumnType::Uuid),
            (
                Value::ObjectId(reposmith_core::ObjectId::from_bytes([7; 12])),
                ColumnType::ObjectId,
            ),
            (Value::Text("🦀".repeat(10)), ColumnType::Text),
            (
                Value::Json(json!({"k": ["é", 1.25, null]})),
                ColumnType::Json,
            ),
            (
                Value::Array(vec![Value::Text("x".into()), Value::Null]),
                ColumnType::Array(&TEXT),
            ),
            (
                Value::HalfVector(pgvector::HalfVector::from_f32_slice(&[1.0, 2.0])),
                ColumnType::Vector(VectorKind::Half),
            ),
            (Value::Null, ColumnType::Json),
        ];
        for (value, ty) in cases {
            assert_eq!(
                value_bound_size(&value, &ty),
                bound_size(&[to_sea(value.clone(), &ty)]),
                "{value:?}"
            );
        }
    }

    #[test]
    fn more_parameters_than_postgres_takes_are_invalid_input_naming_the_count() {
        let params = vec![to_sea(Value::I64(1), &ColumnType::BigInt); MAX_BINDS + 1];
        let err = check_bound_size(usize::MAX, "Note", &params, |_| None).unwrap_err();
        let Error::InvalidInput { entity, reason, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*entity, "Note");
        assert!(reason.contains("65536 values"), "{reason}");
        assert!(check_bound_size(usize::MAX, "Note", &params[1..], |_| None).is_ok());
    }

    #[test]
    fn over_the_cap_is_too_large_naming_the_largest_field() {
        let params = vec![
            to_sea(Value::I64(1), &ColumnType::BigInt),
            to_sea(Value::Text("x".repeat(100)), &TEXT),
        ];
        assert!(check_bound_size(116, "Note", &params, |_| None).is_ok());
        let err =
            check_bound_size(115, "Note", &params, |i| ["id", "body"].get(i).copied()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the values bound to one statement on Note (the largest, `body`, takes 104 bytes) \
             is too large: 116 bytes, the limit is 115"
        );
    }
}
