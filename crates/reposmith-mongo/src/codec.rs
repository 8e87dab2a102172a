//! [`Value`] ⇄ BSON, and an entity's values ⇄ one document.
//!
//! # Mapping
//!
//! | `Value` / column type | BSON |
//! |---|---|
//! | `Null` (a `None`) | explicit `null`: the key is always present, so `is_null` is `{k: null}` |
//! | `Bool` | boolean |
//! | `I16`, `I32` | Int32 |
//! | `I64` | Int64 |
//!
//! An integer field reads Int32 and Int64 alike: widening always, narrowing
//! when the value fits; an Int64 beyond an `i32` field's range is
//! [`Error::Decode`] naming the key, the value and the range.
//! | `F32`, `F64` | double |
//! | `Text`, enums | string (enums by their stored name) |
//! | `Uuid` | binary subtype 4 |
//! | `TimestampTz` | date, **millisecond** precision (BSON's); writes return the truncated value |
//! | `Date` | date at midnight UTC, so dates sort and compare as dates |
//! | `Json` | the matching BSON: objects as embedded documents, integers as Int64, other numbers as double |
//! | `Array` | array |
//! | `Vector`, `HalfVector`, `SparseVector`, `Bit` | see the `vector_codec` module: arrays of doubles, a `{dims, indices, values}` sub-document, an array of booleans |
//!
//! The id column is stored as `_id`. JSON keys starting with `$` or holding
//! `.` are refused with [`Error::InvalidInput`] naming the field: MongoDB
//! would read them as operators or paths. An integer beyond `i64` is refused
//! too, rather than silently rounded to a double, and so is JSON nested
//! deeper than [`MAX_JSON_DEPTH`](reposmith_core::json::MAX_JSON_DEPTH) (the
//! whole policy is in [`reposmith_core::json`]).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use mongodb::bson::raw::CStr;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{
    Binary, Bson, Document, RawBinaryRef, RawBson, RawBsonRef, RawDocument, RawDocumentBuf,
};
use reposmith_core::value::{DecodeError, fit_integer};
use reposmith_core::{ColumnDef, ColumnType, EntitySchema, Error, Result, Value};
use uuid::Uuid;

/// The document key of column `index`: `_id` for the id column, else its name.
pub(crate) fn key(schema: &EntitySchema, index: usize) -> &'static str {
    if index == schema.id {
        "_id"
    } else {
        schema.columns[index].name
    }
}

/// `at` truncated to BSON's millisecond precision.
pub(crate) fn to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

/// The BSON form of `value`; `field` names the field in errors.
pub(crate) fn to_bson(entity: &'static str, field: &str, value: &Value) -> Result<Bson> {
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::I16(n) => Bson::Int32(i32::from(*n)),
        Value::I32(n) => Bson::Int32(*n),
        Value::I64(n) => Bson::Int64(*n),
        Value::F32(n) => Bson::Double(f64::from(*n)),
        Value::F64(n) => Bson::Double(*n),
        Value::Text(s) => Bson::String(s.clone()),
        Value::Uuid(u) => uuid_bson(u),
        Value::ObjectId(o) => Bson::ObjectId(mongodb::bson::oid::ObjectId::from_bytes(o.bytes())),
        Value::TimestampTz(t) => Bson::DateTime(bson_date(entity, field, t)?),
        Value::Date(d) => Bson::DateTime(mongodb::bson::DateTime::from_millis(
            d.and_time(NaiveTime::MIN).and_utc().timestamp_millis(),
        )),
        Value::Json(json) => json_to_bson(entity, field, json)?,
        Value::Array(items) => Bson::Array(
            items
                .iter()
                .map(|v| to_bson(entity, field, v))
                .collect::<Result<_>>()?,
        ),
        other => match crate::vector_codec::vector_to_bson(other) {
            Some(bson) => bson,
            None => {
                let reason = format!("{} values are not storable in MongoDB", other.kind());
                return Err(Error::invalid(entity, field, reason));
            }
        },
    })
}

/// `at` as a BSON date, refused when its milliseconds would not read back
/// as a `DateTime<Utc>`: a leap second at chrono's last instant
/// (262142-12-31T23:59:60) counts one second past it, and a document holding
/// it could be written but never read (found by the `bson_codec` fuzz target).
fn bson_date(
    entity: &'static str,
    field: &str,
    at: &DateTime<Utc>,
) -> Result<mongodb::bson::DateTime> {
    let millis = at.timestamp_millis();
    if DateTime::from_timestamp_millis(millis).is_none() {
        let reason = format!("{at} is beyond the instants a stored date reads back as");
        return Err(Error::invalid(entity, field, reason));
    }
    Ok(mongodb::bson::DateTime::from_millis(millis))
}

fn uuid_bson(u: &Uuid) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Uuid,
        bytes: u.as_bytes().to_vec(),
    })
}

/// JSON as BSON, refusing keys MongoDB would read as operators or paths,
/// integers beyond `i64`, and nesting deeper than
/// [`MAX_JSON_DEPTH`](reposmith_core::json::MAX_JSON_DEPTH) (checked first,
/// so the conversion's recursion is bounded).
pub(crate) fn json_to_bson(
    entity: &'static str,
    field: &str,
    json: &serde_json::Value,
) -> Result<Bson> {
    reposmith_core::json::check_json_depth(entity, field, json)?;
    nested_json_to_bson(entity, field, json)
}

/// [`json_to_bson`] once the depth is known to be bounded.
fn nested_json_to_bson(
    entity: &'static str,
    field: &str,
    json: &serde_json::Value,
) -> Result<Bson> {
    use serde_json::Value as J;
    Ok(match json {
        J::Null => Bson::Null,
        J::Bool(b) => Bson::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Bson::Int64(i),
            (None, _) if n.is_u64() => {
                let reason = format!("the integer {n} is beyond i64, which MongoDB cannot store");
                return Err(Error::invalid(entity, field, reason));
            }
            (None, Some(f)) => Bson::Double(f),
            (None, None) => return Err(Error::invalid(entity, field, "unrepresentable number")),
        },
        J::String(s) => Bson::String(s.clone()),
        J::Array(items) => Bson::Array(
            items
                .iter()
                .map(|v| nested_json_to_bson(entity, field, v))
                .collect::<Result<_>>()?,
        ),
        J::Object(map) => {
            let mut doc = Document::new();
            for (k, v) in map {
                check_json_key(entity, field, k)?;
                doc.insert(k.clone(), nested_json_to_bson(entity, field, v)?);
            }
            Bson::Document(doc)
        }
    })
}

/// Refuses a JSON key MongoDB would read as an operator (`$…`) or a path (`a.b`).
pub(crate) fn check_json_key(entity: &'static str, field: &str, key: &str) -> Result<()> {
    if key.starts_with('$') || key.contains('.') {
        let reason = format!(
            "the JSON key {key:?} starts with '$' or contains '.', which MongoDB reads as an operator or a path"
        );
        return Err(Error::invalid(entity, field, reason));
    }
    if key.contains('\0') {
        // BSON keys are C strings: the driver would fail mid-encoding.
        let reason = format!("the JSON key {key:?} contains a NUL character (\\u0000)");
        return Err(Error::invalid(entity, field, reason));
    }
    Ok(())
}

/// The document for an entity's schema-ordered `values`.
pub(crate) fn encode(schema: &EntitySchema, values: &[Value]) -> Result<Document> {
    let mut doc = Document::new();
    for (i, (column, value)) in schema.columns.iter().zip(values).enumerate() {
        doc.insert(key(schema, i), to_bson(schema.entity, column.field, value)?);
    }
    Ok(doc)
}

/// The document for an entity's schema-ordered `values`, encoded as it goes
/// on the wire.
///
/// Same mapping as [`encode`], without building a [`Document`] first: the
/// driver copies these bytes into its message as they are, where it
/// serializes a `Document` again value by value, and the encoded length is
/// the exact size for the size check.
pub(crate) fn encode_raw(schema: &EntitySchema, values: &[Value]) -> Result<RawDocumentBuf> {
    let mut doc = RawDocumentBuf::new();
    for (i, (column, value)) in schema.columns.iter().zip(values).enumerate() {
        let key = <&CStr>::try_from(key(schema, i)).map_err(|_| {
            Error::invalid(
                schema.entity,
                column.field,
                "a key MongoDB cannot hold (NUL)",
            )
        })?;
        // The common scalars are appended by reference; the rest take the
        // one mapping of `to_bson`.
        match value {
            Value::Null => doc.append(key, RawBsonRef::Null),
            Value::Bool(b) => doc.append(key, *b),
            Value::I16(n) => doc.append(key, i32::from(*n)),
            Value::I32(n) => doc.append(key, *n),
            Value::I64(n) => doc.append(key, *n),
            Value::F64(n) => doc.append(key, *n),
            Value::Text(s) => doc.append(key, s.as_str()),
            Value::Uuid(u) => doc.append(
                key,
                RawBinaryRef {
                    subtype: BinarySubtype::Uuid,
                    bytes: u.as_bytes(),
                },
            ),
            Value::TimestampTz(t) => doc.append(key, bson_date(schema.entity, column.field, t)?),
            other => {
                let bson = to_bson(schema.entity, column.field, other)?;
                let raw = RawBson::try_from(bson)
                    .map_err(|e| Error::invalid(schema.entity, column.field, e.to_string()))?;
                doc.append(key, raw);
            }
        }
    }
    Ok(doc)
}

/// The schema-ordered values of a stored document read straight from its
/// bytes; a missing key reads as NULL. Same mapping as [`decode`] (the
/// scalars [`from_raw`] reads itself give what [`from_bson`] gives), without
/// first building a [`Document`] of owned values, which cost a find of ten
/// documents more client instructions than the raw driver's whole read.
pub(crate) fn decode_raw(schema: &EntitySchema, doc: &RawDocument) -> Result<Vec<Value>> {
    let mut values: Vec<Option<Value>> = vec![None; schema.columns.len()];
    for element in doc {
        let (name, raw) = element.map_err(|e| Error::Decode {
            entity: schema.entity,
            field: "document",
            source: DecodeError {
                expected: "a BSON document",
                found: e.to_string(),
            },
        })?;
        let name = name.as_str();
        let Some(i) = (0..schema.columns.len()).find(|&i| key(schema, i) == name) else {
            continue;
        };
        let column = &schema.columns[i];
        let value = from_raw(column, raw).map_err(|source| Error::Decode {
            entity: schema.entity,
            field: column.field,
            source,
        })?;
        values[i] = Some(value);
    }
    // An absent key reads as BSON null, as in `decode` (whose meaning for a
    // JSON column depends on its nullability).
    schema
        .columns
        .iter()
        .zip(values)
        .map(|(column, value)| match value {
            Some(value) => Ok(value),
            None => from_bson(column, &column.ty, &Bson::Null).map_err(|source| Error::Decode {
                entity: schema.entity,
                field: column.field,
                source,
            }),
        })
        .collect()
}

/// [`from_bson`] of a raw value: the scalars of the usual columns directly,
/// everything else through an owned [`Bson`].
fn from_raw(column: &ColumnDef, raw: RawBsonRef<'_>) -> Result<Value, DecodeError> {
    match (&column.ty, raw) {
        (ColumnType::Text | ColumnType::Enum(_), RawBsonRef::String(s)) => {
            Ok(Value::Text(s.to_owned()))
        }
        (ColumnType::Double, RawBsonRef::Double(f)) => Ok(Value::F64(f)),
        (ColumnType::BigInt, RawBsonRef::Int64(n)) => Ok(Value::I64(n)),
        (ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt, RawBsonRef::Int32(n)) => {
            fit_integer(i64::from(n), &column.ty, column.name)
        }
        (ColumnType::SmallInt | ColumnType::Int, RawBsonRef::Int64(n)) => {
            fit_integer(n, &column.ty, column.name)
        }
        (ColumnType::Bool, RawBsonRef::Boolean(b)) => Ok(Value::Bool(b)),
        (ColumnType::Uuid, RawBsonRef::Binary(b)) if b.subtype == BinarySubtype::Uuid => {
            Uuid::from_slice(b.bytes)
                .map(Value::Uuid)
                .map_err(|_| wrong("uuid", &Bson::Binary(b.to_binary())))
        }
        (ColumnType::TimestampTz, RawBsonRef::DateTime(d)) => {
            DateTime::from_timestamp_millis(d.timestamp_millis())
                .map(Value::TimestampTz)
                .ok_or_else(|| wrong("date", &Bson::DateTime(d)))
        }
        _ => {
            let bson = Bson::try_from(raw).map_err(|e| DecodeError {
                expected: "a BSON value",
                found: e.to_string(),
            })?;
            from_bson(column, &column.ty, &bson)
        }
    }
}

/// The id value of a stored `_id`.
pub(crate) fn decode_id(schema: &EntitySchema, bson: &Bson) -> Result<Value> {
    let column = schema.id_column();
    from_bson(column, &column.ty, bson).map_err(|source| Error::Decode {
        entity: schema.entity,
        field: column.field,
        source,
    })
}

/// The schema-ordered values of a stored document; a missing key reads as NULL.
pub(crate) fn decode(schema: &EntitySchema, doc: &Document) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(schema.columns.len());
    for (i, column) in schema.columns.iter().enumerate() {
        let bson = doc.get(key(schema, i)).unwrap_or(&Bson::Null);
        let value = from_bson(column, &column.ty, bson).map_err(|source| Error::Decode {
            entity: schema.entity,
            field: column.field,
            source,
        })?;
        values.push(value);
    }
    Ok(values)
}

fn wrong(expected: &'static str, found: &Bson) -> DecodeError {
    DecodeError {
        expected,
        found: format!("BSON {:?}", found.element_type()),
    }
}

/// Reads `bson` as a value of type `ty` (of `column`, whose nullability
/// decides whether a JSON column's `null` is NULL or the JSON value null).
fn from_bson(column: &ColumnDef, ty: &ColumnType, bson: &Bson) -> Result<Value, DecodeError> {
    if let (Bson::Null, ColumnType::Json) = (bson, ty) {
        return Ok(if column.nullable {
            Value::Null
        } else {
            Value::Json(serde_json::Value::Null)
        });
    }
    if matches!(bson, Bson::Null | Bson::Undefined) {
        return Ok(Value::Null);
    }
    match ty {
        ColumnType::Text | ColumnType::Enum(_) => match bson {
            Bson::String(s) => Ok(Value::Text(s.clone())),
            other => Err(wrong("string", other)),
        },
        ColumnType::Bool => bson
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| wrong("bool", bson)),
        // Int32 or Int64 alike, checked into the field's width: an Int64
        // beyond an i32 field's range is a decode error naming the column
        // and the range, never truncated.
        ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt => match integer(bson) {
            Some(n) => fit_integer(n, ty, column.name),
            None => Err(wrong(ty.integer_name().unwrap_or("an integer"), bson)),
        },
        ColumnType::Real => number(bson)
            .map(|f| Value::F32(f as f32))
            .ok_or_else(|| wrong("f32", bson)),
        ColumnType::Double => number(bson)
            .map(Value::F64)
            .ok_or_else(|| wrong("f64", bson)),
        ColumnType::Uuid => uuid(bson)
            .map(Value::Uuid)
            .ok_or_else(|| wrong("uuid", bson)),
        ColumnType::ObjectId => match bson {
            Bson::ObjectId(oid) => Ok(Value::ObjectId(reposmith_core::ObjectId::from_bytes(
                oid.bytes(),
            ))),
            other => Err(wrong("objectId", other)),
        },
        ColumnType::TimestampTz => date(bson)
            .map(Value::TimestampTz)
            .ok_or_else(|| wrong("date", bson)),
        ColumnType::Date => date(bson)
            .map(|t| Value::Date(NaiveDate::from(t.naive_utc())))
            .ok_or_else(|| wrong("date", bson)),
        ColumnType::Json => bson_to_json(bson).map(Value::Json),
        ColumnType::Array(inner) => match bson {
            Bson::Array(items) => items
                .iter()
                .map(|item| from_bson(column, inner, item))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            other => Err(wrong("array", other)),
        },
        ColumnType::Vector(kind) => crate::vector_codec::vector_from_bson(*kind, bson),
        _ => Err(wrong("a known column type", bson)),
    }
}

fn integer(bson: &Bson) -> Option<i64> {
    match bson {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

fn number(bson: &Bson) -> Option<f64> {
    match bson {
        Bson::Double(f) => Some(*f),
        other => integer(other).map(|n| n as f64),
    }
}

fn uuid(bson: &Bson) -> Option<Uuid> {
    match bson {
        Bson::Binary(b) if b.subtype == BinarySubtype::Uuid => Uuid::from_slice(&b.bytes).ok(),
        _ => None,
    }
}

fn date(bson: &Bson) -> Option<DateTime<Utc>> {
    match bson {
        Bson::DateTime(d) => DateTime::from_timestamp_millis(d.timestamp_millis()),
        _ => None,
    }
}

/// BSON read back as JSON; types JSON lacks are decode errors.
fn bson_to_json(bson: &Bson) -> Result<serde_json::Value, DecodeError> {
    use serde_json::Value as J;
    Ok(match bson {
        Bson::Null | Bson::Undefined => J::Null,
        Bson::Boolean(b) => J::Bool(*b),
        Bson::Int32(n) => J::from(*n),
        Bson::Int64(n) => J::from(*n),
        Bson::Double(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .ok_or_else(|| wrong("a finite number", bson))?,
        Bson::String(s) => J::String(s.clone()),
        Bson::Array(items) => J::Array(items.iter().map(bson_to_json).collect::<Result<_, _>>()?),
        Bson::Document(doc) => J::Object(
            doc.iter()
                .map(|(k, v)| Ok((k.to_string(), bson_to_json(v)?)))
                .collect::<Result<_, DecodeError>>()?,
        ),
        other => return Err(wrong("JSON", other)),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_round_trips_and_operator_keys_are_refused() {
        let value = json!({"a": [1, 2.5, null, {"b": "🦀"}], "i": i64::MIN});
        let bson = json_to_bson("T", "meta", &value).unwrap();
        assert_eq!(bson_to_json(&bson).unwrap(), value);
        for bad in [
            json!({"$ne": ""}),
            json!({"x": {"a.b": 1}}),
            json!({"x\0y": 1}),
        ] {
            let err = json_to_bson("T", "meta", &bad).unwrap_err();
            assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "meta"));
        }
        assert!(json_to_bson("T", "meta", &json!(u64::MAX)).is_err());
        let deep = |n: usize| (0..n).fold(json!(1), |v, _| serde_json::Value::Array(vec![v]));
        let limit = reposmith_core::json::MAX_JSON_DEPTH;
        assert!(json_to_bson("T", "meta", &deep(limit)).is_ok());
        let err = json_to_bson("T", "meta", &deep(limit + 1)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "meta"),
            "{err}"
        );
    }

    #[test]
    fn integers_read_at_any_width_and_narrow_only_when_they_fit() {
        let small = ColumnDef::new("n", "n", ColumnType::SmallInt, false);
        let int = ColumnDef::new("count", "count", ColumnType::Int, false);
        let big = ColumnDef::new("n", "n", ColumnType::BigInt, false);
        let read = |column: &ColumnDef, bson: Bson| from_bson(column, &column.ty, &bson);
        assert_eq!(read(&big, Bson::Int32(-7)).unwrap(), Value::I64(-7));
        assert_eq!(read(&int, Bson::Int64(9)).unwrap(), Value::I32(9));
        assert_eq!(
            read(&small, Bson::Int64(-32_768)).unwrap(),
            Value::I16(i16::MIN)
        );
        let err = read(&int, Bson::Int64(3_000_000_000)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected i32, found 3000000000 in column \"count\", outside i32's range -2147483648..=2147483647"
        );
        assert!(read(&small, Bson::Int32(40_000)).is_err());
        assert!(read(&int, Bson::Double(1.0)).is_err());
        // The raw path reads the same.
        let mut doc = RawDocumentBuf::new();
        doc.append(<&CStr>::try_from("count").unwrap(), 3_000_000_000i64);
        let raw = doc.get("count").unwrap().unwrap();
        assert_eq!(from_raw(&int, raw).unwrap_err(), err);
        let mut doc = RawDocumentBuf::new();
        doc.append(<&CStr>::try_from("n").unwrap(), 5i32);
        let raw = doc.get("n").unwrap().unwrap();
        assert_eq!(from_raw(&big, raw).unwrap(), Value::I64(5));
    }

    #[test]
    fn a_leap_second_at_chronos_last_instant_is_refused_not_stored_unreadable() {
        let last = DateTime::<Utc>::MAX_UTC;
        let leap = DateTime::from_timestamp(last.timestamp(), 1_999_999_999).unwrap();
        let err = to_bson("T", "at", &Value::TimestampTz(leap)).unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "at"));
        let bson = to_bson("T", "at", &Value::TimestampTz(last)).unwrap();
        let column = ColumnDef::new("at", "at", ColumnType::TimestampTz, false);
        assert_eq!(
            from_bson(&column, &ColumnType::TimestampTz, &bson).unwrap(),
            Value::TimestampTz(to_millis(last))
        );
    }

    #[test]
    fn dates_and_uuids_round_trip() {
        let column = ColumnDef::new("d", "d", ColumnType::Date, false);
        let day = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        let bson = to_bson("T", "d", &Value::Date(day)).unwrap();
        assert_eq!(
            from_bson(&column, &ColumnType::Date, &bson).unwrap(),
            Value::Date(day)
        );
        let id = Uuid::now_v7();
        let bson = to_bson("T", "id", &Value::Uuid(id)).unwrap();
        assert_eq!(uuid(&bson), Some(id));
    }
}
