//! [`Cursor`]: an opaque keyset position, the sort-key values of the last row of a page.
//!
//! Encoded as a compact JSON array so it survives a round trip through a
//! client; decoding checks every element against the column types of the
//! query's sort keys, so a tampered cursor is an invalid-input error, never
//! a malformed query.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value as Json;

use crate::schema::ColumnType;
use crate::value::Value;
use crate::{Error, Result};

/// Where the next page starts. Treat it as opaque text (URL-encode it in links).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// The cursor after a row whose sort-key values are `values`.
    pub fn encode(values: &[Value]) -> Self {
        let items: Vec<Json> = values.iter().map(to_json).collect();
        Cursor(Json::Array(items).to_string())
    }

    /// Reads a cursor a client sent back.
    pub fn parse(text: impl Into<String>) -> Self {
        Cursor(text.into())
    }

    /// The cursor's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The sort-key values, checked against `types` (the sort columns' types, id last).
    pub fn decode(&self, entity: &'static str, types: &[ColumnType]) -> Result<Vec<Value>> {
        let invalid = |reason: String| Error::invalid(entity, "cursor", reason);
        let items = match serde_json::from_str::<Json>(&self.0) {
            Ok(Json::Array(items)) => items,
            _ => return Err(invalid("not a cursor this query produced".into())),
        };
        if items.len() != types.len() {
            return Err(invalid(format!(
                "holds {} sort keys, the query has {}",
                items.len(),
                types.len()
            )));
        }
        items
            .into_iter()
            .zip(types)
            .map(|(item, ty)| {
                from_json(item, ty).ok_or_else(|| invalid(format!("a key is not a {ty:?}")))
            })
            .collect()
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cursor").field(&self.0).finish()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::from(*b),
        Value::I16(n) => Json::from(*n),
        Value::I32(n) => Json::from(*n),
        Value::I64(n) => Json::from(*n),
        Value::F32(n) => float_to_json(f64::from(*n)),
        Value::F64(n) => float_to_json(*n),
        Value::Text(s) => Json::from(s.as_str()),
        Value::Uuid(u) => Json::from(u.to_string()),
        Value::ObjectId(o) => Json::from(o.to_hex()),
        Value::TimestampTz(t) => Json::from(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        Value::Date(d) => Json::from(d.to_string()),
        Value::Json(j) => j.clone(),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        // Vectors are never sort keys (not ordered types); a cursor never holds one.
        Value::Vector(_) | Value::HalfVector(_) | Value::SparseVector(_) | Value::Bit(_) => {
            Json::Null
        }
    }
}

/// JSON has no NaN or Infinity, and a float sort key may hold them: they
/// travel as the strings Postgres itself prints for them.
fn float_to_json(n: f64) -> Json {
    match n {
        n if n.is_nan() => Json::from("NaN"),
        f64::INFINITY => Json::from("Infinity"),
        f64::NEG_INFINITY => Json::from("-Infinity"),
        n => Json::from(n),
    }
}

fn float_from_json(item: &Json) -> Option<f64> {
    match item.as_str() {
        Some("NaN") => Some(f64::NAN),
        Some("Infinity") => Some(f64::INFINITY),
        Some("-Infinity") => Some(f64::NEG_INFINITY),
        Some(_) => None,
        None => item.as_f64(),
    }
}

/// An instant as [`to_json`] writes it. RFC 3339 has four-digit years
/// only, but a `timestamptz` reaches 4713 BC and 294276 AD, and chrono
/// writes those years signed (`-0001-12-31T23:59:59Z`, `+10000-01-01T…`):
/// they are read back with chrono's own signed-year format, or a page
/// ending on such a row would have a next page nobody can fetch.
fn timestamp_from_json(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    let naive = text.strip_suffix('Z')?;
    NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|at| at.and_utc())
}

fn from_json(item: Json, ty: &ColumnType) -> Option<Value> {
    if item.is_null() {
        return Some(Value::Null);
    }
    Some(match ty {
        ColumnType::Text | ColumnType::Enum(_) => Value::Text(item.as_str()?.to_owned()),
        ColumnType::Bool => Value::Bool(item.as_bool()?),
        ColumnType::SmallInt => Value::I16(i16::try_from(item.as_i64()?).ok()?),
        ColumnType::Int => Value::I32(i32::try_from(item.as_i64()?).ok()?),
        ColumnType::BigInt => Value::I64(item.as_i64()?),
        ColumnType::Real => Value::F32(float_from_json(&item)? as f32),
        ColumnType::Double => Value::F64(float_from_json(&item)?),
        ColumnType::Uuid => Value::Uuid(item.as_str()?.parse().ok()?),
        ColumnType::ObjectId => Value::ObjectId(item.as_str()?.parse().ok()?),
        ColumnType::TimestampTz => Value::TimestampTz(timestamp_from_json(item.as_str()?)?),
        ColumnType::Date => Value::Date(item.as_str()?.parse::<NaiveDate>().ok()?),
        ColumnType::Json | ColumnType::Array(_) | ColumnType::Vector(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    /// Keyset predicates compare with `=` and `>`: a float sort key that comes
    /// back one ULP off repeats or skips rows, so every bit must survive.
    #[test]
    fn float_keys_round_trip_bit_exact() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bits = f64::from_bits(state);
            let distance = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0;
            let rank = f64::from(f32::from_bits(state as u32 & 0x3fff_ffff));
            for key in [bits, distance, rank] {
                if !key.is_finite() {
                    continue;
                }
                let cursor = Cursor::encode(&[Value::F64(key)]);
                let back = cursor.decode("T", &[ColumnType::Double]).unwrap();
                assert_eq!(back, [Value::F64(key)], "{key:e} via {cursor}");
                let Value::F64(read) = back[0] else {
                    unreachable!()
                };
                assert_eq!(read.to_bits(), key.to_bits(), "{key:e} via {cursor}");
            }
        }
    }

    #[test]
    fn round_trips_sort_keys() {
        let when = DateTime::<Utc>::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let values = vec![
            Value::TimestampTz(when),
            Value::Text("O'Brien \"quoted\"".into()),
            Value::Null,
            Value::Uuid(Uuid::from_u128(42)),
        ];
        let types = [
            ColumnType::TimestampTz,
            ColumnType::Text,
            ColumnType::BigInt,
            ColumnType::Uuid,
        ];
        let cursor = Cursor::encode(&values);
        assert_eq!(
            Cursor::parse(cursor.to_string())
                .decode("Doc", &types)
                .unwrap(),
            values
        );
    }

    /// Found by the `cursor_decode` fuzz target: RFC 3339 stops at year
    /// 9999 and starts at year 0, PostgreSQL's `timestamptz` does not.
    #[test]
    fn timestamps_beyond_four_digit_years_round_trip() {
        for seconds in [
            -62_167_219_201,
            253_402_300_800,
            -210_866_803_200,
            8_210_266_876_799,
        ] {
            let at = DateTime::from_timestamp(seconds, 123_456_789).unwrap();
            let cursor = Cursor::encode(&[Value::TimestampTz(at)]);
            let back = cursor.decode("Doc", &[ColumnType::TimestampTz]);
            assert_eq!(back.unwrap(), [Value::TimestampTz(at)], "via {cursor}");
        }
    }

    #[test]
    fn non_finite_float_keys_survive() {
        let types = [ColumnType::Double, ColumnType::Real, ColumnType::Double];
        let values = [
            Value::F64(f64::INFINITY),
            Value::F32(f32::NEG_INFINITY),
            Value::F64(f64::NAN),
        ];
        let back = Cursor::encode(&values).decode("Doc", &types).unwrap();
        assert_eq!(back[..2], values[..2]);
        assert!(matches!(back[2], Value::F64(n) if n.is_nan()));
    }

    #[test]
    fn tampered_cursors_are_invalid_input() {
        let types = [ColumnType::BigInt];
        for text in ["", "{}", "[1,2]", "[\"x\"]", "[1.5e400]"] {
            let err = Cursor::parse(text).decode("Doc", &types).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{text}: {err:?}");
        }
    }
}
