//! Checks run before anything is sent: Postgres rejects `\u{0000}` in `text`
//! and `jsonb`, and would report it as an encoding error without naming the
//! field, after a round trip; JSON nested deeper than
//! [`MAX_JSON_DEPTH`](reposmith_core::json::MAX_JSON_DEPTH) would be stored
//! and then fail every read (serde_json reads 127 levels). JSON numbers need
//! no check: serde_json cannot hold NaN or infinities. The whole JSON policy
//! is in [`reposmith_core::json`]. Instants and days beyond PostgreSQL's
//! range (chrono reaches 262143 BC, PostgreSQL 4713 BC) are refused the same
//! way instead of failing as "timestamp out of range".

use reposmith_core::json::check_json_depth;
use reposmith_core::{EntitySchema, Error, Result, Value};

/// Why a NUL is refused, in the error a caller sees.
const NUL_REASON: &str = "contains a NUL character (\\u0000), which PostgreSQL cannot store";

/// Rejects an entity's values when any text or JSON in them holds a NUL, or
/// a vector does not fit its column (dimension, NaN, ±Inf, empty).
pub(crate) fn check_row(schema: &EntitySchema, values: &[Value]) -> Result<()> {
    for (column, value) in schema.columns.iter().zip(values) {
        check_value(schema.entity, column.field, value)?;
    }
    reposmith_core::vector::check_row(schema, values)
}

/// The `timestamptz` values PostgreSQL accepts, in microseconds from its
/// epoch (2000-01-01): 4714-11-24 BC 00:00 UTC up to 294277-01-01 AD,
/// exclusive (`MIN_TIMESTAMP` and `END_TIMESTAMP` in its
/// `datatype/timestamp.h`).
pub(crate) const PG_TIMESTAMP_MICROS: std::ops::Range<i64> =
    -211_813_488_000_000_000..9_223_371_331_200_000_000;
/// The `date` values PostgreSQL accepts, in days from its epoch: Julian
/// day 0 (4714-11-24 BC) up to 5874898-01-01 AD, exclusive.
pub(crate) const PG_DATE_DAYS: std::ops::Range<i32> = -2_451_545..2_145_031_949;
/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01.
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Rejects one value (a field, a filter operand, a cursor's key) holding a
/// NUL, or an instant or a day PostgreSQL cannot store.
pub(crate) fn check_value(entity: &'static str, field: &str, value: &Value) -> Result<()> {
    if has_nul(value) {
        return Err(Error::invalid(entity, field, NUL_REASON));
    }
    if let Some(reason) = out_of_range(value) {
        return Err(Error::invalid(entity, field, reason));
    }
    match value {
        Value::Json(json) => check_json_depth(entity, field, json),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_value(entity, field, item)),
        _ => Ok(()),
    }
}

/// `value`'s instant from PostgreSQL's epoch, when PostgreSQL can hold it
/// and it reads back as a `DateTime<Utc>`: a leap second at chrono's last
/// instant (262142-12-31T23:59:60) counts one second past it, and a row
/// holding it could be written but never read (found by the
/// `copy_encoder` fuzz target).
pub(crate) fn pg_micros(at: &chrono::DateTime<chrono::Utc>) -> Option<i64> {
    let micros = at.timestamp_micros();
    chrono::DateTime::from_timestamp_micros(micros)?;
    micros
        .checked_sub(PG_EPOCH_MICROS)
        .filter(|micros| PG_TIMESTAMP_MICROS.contains(micros))
}

/// `day` in days from PostgreSQL's epoch, when PostgreSQL can hold it.
pub(crate) fn pg_days(day: &chrono::NaiveDate) -> Option<i32> {
    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("a valid date");
    i32::try_from((*day - epoch).num_days())
        .ok()
        .filter(|days| PG_DATE_DAYS.contains(days))
}

/// Why PostgreSQL would refuse an instant or a day in `value`.
fn out_of_range(value: &Value) -> Option<String> {
    match value {
        Value::TimestampTz(at) if pg_micros(at).is_none() => Some(format!(
            "{at} is outside the instants PostgreSQL stores and reads back (4713 BC to 262142 AD)"
        )),
        Value::Date(day) if pg_days(day).is_none() => Some(format!(
            "{day} is outside PostgreSQL's date range (4713 BC to 5874897 AD)"
        )),
        Value::Array(items) => items.iter().find_map(out_of_range),
        _ => None,
    }
}

/// Rejects a string operand (a LIKE pattern, a JSON key) holding a NUL.
pub(crate) fn check_text(entity: &'static str, field: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::invalid(entity, field, NUL_REASON));
    }
    Ok(())
}

/// Rejects a JSON operand holding a NUL.
pub(crate) fn check_json(
    entity: &'static str,
    field: &str,
    json: &serde_json::Value,
) -> Result<()> {
    if json_has_nul(json) {
        return Err(Error::invalid(entity, field, NUL_REASON));
    }
    check_json_depth(entity, field, json)
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::Text(s) => s.contains('\0'),
        Value::Json(j) => json_has_nul(j),
        Value::Array(items) => items.iter().any(has_nul),
        _ => false,
    }
}

/// Walks keys and strings; iterative so a deeply nested document cannot overflow the stack.
fn json_has_nul(json: &serde_json::Value) -> bool {
    let mut pending = vec![json];
    while let Some(node) = pending.pop() {
        match node {
            serde_json::Value::String(s) if s.contains('\0') => return true,
            serde_json::Value::Array(items) => pending.extend(items),
            serde_json::Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                pending.extend(map.values());
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_nul_in_text_arrays_and_json_keys_and_strings() {
        assert!(has_nul(&Value::Text("a\0b".into())));
        assert!(has_nul(&Value::Array(vec![Value::Text("\0".into())])));
        assert!(json_has_nul(&json!({"a": [{"b": "x\u{0000}"}]})));
        assert!(json_has_nul(&json!({"k\u{0000}": 1})));
        assert!(!json_has_nul(&json!({"a": ["ok", 1, null, {"é": "🦀"}]})));
        assert!(!has_nul(&Value::I64(0)));
    }

    /// Seen while writing the `copy_encoder` fuzz target, whose instants
    /// span chrono's range: the binary COPY encoder subtracted PostgreSQL's
    /// epoch from chrono's earliest instants and overflowed (a panic with
    /// overflow checks, a wrapped value without), and anything before
    /// 4713 BC failed the whole COPY on the server.
    #[test]
    fn instants_and_days_beyond_postgres_range_are_refused() {
        use chrono::{DateTime, NaiveDate};
        let first = DateTime::from_timestamp(-210_866_803_200, 0).unwrap();
        let day = |y, m, d| Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap());
        let refused = |v: &Value| check_value("T", "at", v).is_err();
        assert!(!refused(&Value::TimestampTz(first)));
        assert!(refused(&Value::TimestampTz(
            first - chrono::TimeDelta::microseconds(1)
        )));
        assert!(refused(&Value::TimestampTz(
            DateTime::<chrono::Utc>::MIN_UTC
        )));
        assert!(!refused(&Value::TimestampTz(
            DateTime::<chrono::Utc>::MAX_UTC
        )));
        assert!(!refused(&day(-4713, 11, 24)));
        assert!(refused(&day(-4713, 11, 23)));
        assert!(refused(&Value::Array(vec![Value::Null, day(-5000, 1, 1)])));
        assert!(!refused(&day(262_142, 12, 31)));
    }

    #[test]
    fn json_deeper_than_the_limit_is_refused_in_a_field_an_array_or_an_operand() {
        let deep = |n: usize| (0..n).fold(json!(1), |v, _| serde_json::Value::Array(vec![v]));
        let limit = reposmith_core::json::MAX_JSON_DEPTH;
        assert!(check_value("T", "meta", &Value::Json(deep(limit))).is_ok());
        assert!(check_value("T", "meta", &Value::Json(deep(limit + 1))).is_err());
        let array = Value::Array(vec![Value::Json(deep(limit + 1))]);
        assert!(check_value("T", "metas", &array).is_err());
        assert!(check_json("T", "meta", &deep(limit + 1)).is_err());
    }

    #[test]
    fn deep_documents_do_not_overflow() {
        let mut doc = json!("\u{0000}");
        for _ in 0..1_000 {
            doc = json!([doc]);
        }
        assert!(json_has_nul(&doc));
    }
}
