//! Values on their way to and from the wire: [`reposmith_core::Value`] into
//! sea-query's `Value` (so the statement builder numbers the placeholders),
//! sea-query values bound onto sqlx queries, and result rows decoded back
//! into core values by the schema's column types.
//!
//! Nothing here writes a value into SQL text: every value becomes a bound
//! parameter.

use chrono::{DateTime, NaiveDate, Utc};
use reposmith_core::{ColumnType, EntitySchema, Error, Result, Value};
use sea_query::{ArrayType, Value as SqValue};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};
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
pub(crate) fn decode_row(schema: &EntitySchema, row: &PgRow) -> Result<Vec<Value>> {
    schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            decode(row, i, &c.ty).map_err(|e| Error::Decode {
                entity: schema.entity,
                field: c.field,
                source: reposmith_core::value::DecodeError {
                    expected: "the column's type",
                    found: e.to_string(),
                },
            })
        })
        .collect()
}

/// One column as a core value.
pub(crate) fn decode(row: &PgRow, i: usize, ty: &ColumnType) -> sqlx::Result<Value> {
    fn get<T, F>(row: &PgRow, i: usize, wrap: F) -> sqlx::Result<Value>
    where
        T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
        F: Fn(T) -> Value,
    {
        Ok(row.try_get::<Option<T>, _>(i)?.map_or(Value::Null, wrap))
    }
    match ty {
        ColumnType::Text | ColumnType::Enum(_) => get::<String, _>(row, i, Value::Text),
        ColumnType::Bool => get::<bool, _>(row, i, Value::Bool),
        ColumnType::SmallInt => get::<i16, _>(row, i, Value::I16),
        ColumnType::Int => get::<i32, _>(row, i, Value::I32),
        ColumnType::BigInt => get::<i64, _>(row, i, Value::I64),
        ColumnType::Real => get::<f32, _>(row, i, Value::F32),
        ColumnType::Double => get::<f64, _>(row, i, Value::F64),
        ColumnType::Uuid => get::<Uuid, _>(row, i, Value::Uuid),
        ColumnType::ObjectId => get::<String, _>(row, i, object_id),
        ColumnType::TimestampTz => get::<DateTime<Utc>, _>(row, i, Value::TimestampTz),
        ColumnType::Date => get::<NaiveDate, _>(row, i, Value::Date),
        ColumnType::Array(inner) => decode_array(row, i, inner),
        ColumnType::Vector(kind) => decode_vector(row, i, *kind),
        _ => get::<serde_json::Value, _>(row, i, Value::Json),
    }
}

fn decode_vector(row: &PgRow, i: usize, kind: reposmith_core::VectorKind) -> sqlx::Result<Value> {
    use reposmith_core::VectorKind;
    fn get<T, F>(row: &PgRow, i: usize, wrap: F) -> sqlx::Result<Value>
    where
        T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
        F: Fn(T) -> Value,
    {
        Ok(row.try_get::<Option<T>, _>(i)?.map_or(Value::Null, wrap))
    }
    match kind {
        VectorKind::Half => get::<pgvector::HalfVector, _>(row, i, Value::HalfVector),
        VectorKind::Sparse => get::<pgvector::SparseVector, _>(row, i, Value::SparseVector),
        VectorKind::Bit => get::<pgvector::Bit, _>(row, i, Value::Bit),
        _ => get::<pgvector::Vector, _>(row, i, Value::Vector),
    }
}

fn decode_array(row: &PgRow, i: usize, ty: &ColumnType) -> sqlx::Result<Value> {
    fn get<T, F>(row: &PgRow, i: usize, wrap: F) -> sqlx::Result<Value>
    where
        T: for<'r> sqlx::Decode<'r, Postgres>
            + sqlx::Type<Postgres>
            + sqlx::postgres::PgHasArrayType,
        F: Fn(T) -> Value,
    {
        let items = row.try_get::<Option<Vec<Option<T>>>, _>(i)?;
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
        ColumnType::Text | ColumnType::Enum(_) => get::<String, _>(row, i, Value::Text),
        ColumnType::Bool => get::<bool, _>(row, i, Value::Bool),
        ColumnType::SmallInt => get::<i16, _>(row, i, Value::I16),
        ColumnType::Int => get::<i32, _>(row, i, Value::I32),
        ColumnType::BigInt => get::<i64, _>(row, i, Value::I64),
        ColumnType::Real => get::<f32, _>(row, i, Value::F32),
        ColumnType::Double => get::<f64, _>(row, i, Value::F64),
        ColumnType::Uuid => get::<Uuid, _>(row, i, Value::Uuid),
        ColumnType::ObjectId => get::<String, _>(row, i, object_id),
        ColumnType::TimestampTz => get::<DateTime<Utc>, _>(row, i, Value::TimestampTz),
        ColumnType::Date => get::<NaiveDate, _>(row, i, Value::Date),
        _ => get::<serde_json::Value, _>(row, i, Value::Json),
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
