//! Checks run before anything is sent: Postgres rejects `\u{0000}` in `text`
//! and `jsonb`, and would report it as an encoding error without naming the
//! field, after a round trip; JSON nested deeper than
//! [`MAX_JSON_DEPTH`](reposmith_core::json::MAX_JSON_DEPTH) would be stored
//! and then fail every read (serde_json reads 127 levels). JSON numbers need
//! no check: serde_json cannot hold NaN or infinities. The whole policy is
//! in [`reposmith_core::json`].

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

/// Rejects one value (a field or a filter operand) holding a NUL.
pub(crate) fn check_value(entity: &'static str, field: &str, value: &Value) -> Result<()> {
    if has_nul(value) {
        return Err(Error::invalid(entity, field, NUL_REASON));
    }
    match value {
        Value::Json(json) => check_json_depth(entity, field, json),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_value(entity, field, item)),
        _ => Ok(()),
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
