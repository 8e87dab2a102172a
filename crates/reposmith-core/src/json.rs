//! The policy every backend applies to a JSON value before it is sent:
//! how deep it may nest.
//!
//! # JSON input policy
//!
//! What happens to each kind of awkward JSON, on every backend, before the
//! database sees it (the tests in `tests/tests/bad_input/` hold each line):
//!
//! | input | policy |
//! |---|---|
//! | nested deeper than [`MAX_JSON_DEPTH`] (64) arrays/objects | [`Error::InvalidInput`] naming the field: serde_json reads at most 127 levels back (a deeper `jsonb` would be stored and then fail every read), MongoDB stores at most 100 levels in a whole document, and a writer recursing over an unbounded depth can overflow the stack |
//! | `\u0000` in a string or a key | [`Error::InvalidInput`]: PostgreSQL's `jsonb` cannot store it; on MongoDB a key is a C string, a string value is stored as written |
//! | NaN, ±Infinity in an `f32`/`f64` of a `#[repo(json)]` field | [`Error::InvalidInput`] with the path to the number ([`crate::finite`]): serde_json would store `null` |
//! | an integer above `i64::MAX` (`u64::MAX`) | PostgreSQL stores and returns it exactly (`jsonb` numbers are `numeric`); MongoDB: [`Error::InvalidInput`], BSON has no unsigned 64-bit integer and rounding it to a double would change it |
//! | `1e400`, a lone surrogate `"\ud800"`, `NaN` in JSON *text* | never reach a [`serde_json::Value`]: serde_json's parser refuses them, so the caller's own parse fails |
//! | `$`-prefixed or dotted keys | MongoDB: [`Error::InvalidInput`] (operators and paths); PostgreSQL stores them |
//! | a large document | PostgreSQL: up to `PgConfig::max_bind_bytes` per statement ([`Error::TooLarge`] above); MongoDB: up to the server's `maxBsonObjectSize` (16 MiB) per document ([`Error::TooLarge`] above) |

use crate::error::{Error, Result};

/// The deepest nesting of arrays and objects a stored or filtered JSON
/// value may have: a scalar is depth 0, `{}` and `[]` depth 1, `[[1]]`
/// depth 2. 64 is under both serde_json's read limit (127) and MongoDB's
/// 100 levels per document, with room for the document around the value.
pub const MAX_JSON_DEPTH: usize = 64;

/// The nesting depth of `json` (see [`MAX_JSON_DEPTH`]), counted without
/// recursion so no depth can overflow the stack.
pub fn json_depth(json: &serde_json::Value) -> usize {
    use serde_json::Value as J;
    let mut deepest = 0;
    let mut pending = vec![(json, 0)];
    while let Some((node, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match node {
            J::Array(items) => Box::new(items.iter()),
            J::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// Refuses `json`, the value of `entity.field`, when it nests deeper than
/// [`MAX_JSON_DEPTH`].
pub fn check_json_depth(entity: &'static str, field: &str, json: &serde_json::Value) -> Result<()> {
    let depth = json_depth(json);
    if depth <= MAX_JSON_DEPTH {
        return Ok(());
    }
    Err(Error::invalid(
        entity,
        field,
        format!("JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted"),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(depth: usize) -> serde_json::Value {
        (0..depth).fold(json!(1), |inner, _| serde_json::Value::Array(vec![inner]))
    }

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!({})), 1);
        assert_eq!(json_depth(&json!({"a": [1, {"b": []}], "c": 2})), 4);
        assert_eq!(json_depth(&nested(200)), 200);
    }

    #[test]
    fn the_limit_and_one_past_it() {
        assert!(check_json_depth("T", "meta", &nested(MAX_JSON_DEPTH)).is_ok());
        let err = check_json_depth("T", "meta", &nested(MAX_JSON_DEPTH + 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid T.meta: JSON nested 65 levels deep; at most 64 are accepted"
        );
    }

    #[test]
    fn a_very_deep_value_is_measured_without_overflowing() {
        let mut deep = json!(null);
        for _ in 0..100_000 {
            // Not `json!([deep])`: that serializes `deep`, recursively.
            deep = serde_json::Value::Array(vec![deep]);
        }
        assert_eq!(json_depth(&deep), 100_000);
        // serde_json drops a Value recursively; unwind it by hand.
        while let serde_json::Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or_default();
        }
    }
}
