//! Reading the scripts' replies (queue, limiter): flat arrays of Redis values, where a Lua
//! string arrives as a bulk string, a number as an integer and a missing
//! hash field as nil.

use redis::{ErrorKind, RedisError, Value};

/// The reply as an array, or an error naming the script.
pub(crate) fn array(value: Value, script: &'static str) -> Result<Vec<Value>, RedisError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err(unexpected(script)),
    }
}

/// A text field; `None` for nil.
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer field, sent as a number or as decimal text.
pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// An integer reply (`return 1` / `return 0`).
pub(crate) fn flag(value: &Value, script: &'static str) -> Result<bool, RedisError> {
    int(value).map(|n| n != 0).ok_or_else(|| unexpected(script))
}

/// The error for a reply of the wrong shape: a script of another version
/// answered, or the keys were written by something else.
pub(crate) fn unexpected(script: &'static str) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected reply from a reposmith script",
        script.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lua_values() {
        assert_eq!(
            text(&Value::BulkString(b"ab".to_vec())).as_deref(),
            Some("ab")
        );
        assert_eq!(int(&Value::BulkString(b"42".to_vec())), Some(42));
        assert_eq!(int(&Value::Int(-1)), Some(-1));
        assert_eq!(text(&Value::Nil), None);
        assert!(flag(&Value::Int(1), "ack").unwrap());
        assert!(array(Value::Okay, "fetch").is_err());
    }
}
