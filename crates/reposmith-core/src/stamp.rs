//! What every backend's repository manages about a row before writing it:
//! the generated id, the version and the timestamps, plus the text forms of
//! ids and versions that errors carry. Backend-neutral, so Postgres and
//! MongoDB stamp rows the same way.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::schema::{ColumnRole, EntitySchema, IdStrategy};
use crate::value::Value;

/// Stamps a row for insert (and the insert half of an upsert): a time-ordered
/// v7 id for a nil client UUID, version 1, `created_at` and `updated_at` at
/// `now` (the backend passes its clock at the precision it stores).
pub fn stamp_new(schema: &EntitySchema, values: &mut [Value], now: DateTime<Utc>) {
    if schema.id_strategy == IdStrategy::ClientUuid
        && matches!(values[schema.id], Value::Uuid(u) if u.is_nil())
    {
        values[schema.id] = Value::Uuid(Uuid::now_v7());
    }
    if schema.id_strategy == IdStrategy::ClientObjectId
        && matches!(values[schema.id], Value::ObjectId(o) if o.is_zero())
    {
        values[schema.id] = Value::ObjectId(crate::ObjectId::new());
    }
    for (column, value) in schema.columns.iter().zip(values.iter_mut()) {
        match column.role {
            ColumnRole::Version => *value = one_like(value),
            ColumnRole::CreatedAt | ColumnRole::UpdatedAt => *value = Value::TimestampTz(now),
            _ => {}
        }
    }
}

/// Version 1 in the integer width the field uses.
fn one_like(value: &Value) -> Value {
    match value {
        Value::I16(_) => Value::I16(1),
        Value::I32(_) => Value::I32(1),
        _ => Value::I64(1),
    }
}

/// A version value as `i64`, for [`Error::StaleVersion`](crate::Error::StaleVersion).
pub fn version_number(value: &Value) -> i64 {
    match value {
        Value::I16(n) => i64::from(*n),
        Value::I32(n) => i64::from(*n),
        Value::I64(n) => *n,
        _ => 0,
    }
}

/// An id as text, for error messages.
pub fn id_text(value: &Value) -> String {
    match value {
        Value::Text(s) => s.clone(),
        Value::Uuid(u) => u.to_string(),
        Value::ObjectId(o) => o.to_hex(),
        Value::I64(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I16(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnDef, ColumnType};

    static COLUMNS: [ColumnDef; 3] = [
        ColumnDef::new("id", "id", ColumnType::Uuid, false).with_role(ColumnRole::Id),
        ColumnDef::new("v", "v", ColumnType::Int, false).with_role(ColumnRole::Version),
        ColumnDef::new("c", "c", ColumnType::TimestampTz, false).with_role(ColumnRole::CreatedAt),
    ];
    static SCHEMA: EntitySchema =
        EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::ClientUuid, &[]);

    #[test]
    fn new_rows_get_an_id_version_one_and_a_timestamp() {
        let mut values = vec![Value::Uuid(Uuid::nil()), Value::I32(7), Value::Null];
        stamp_new(&SCHEMA, &mut values, Utc::now());
        assert!(matches!(values[0], Value::Uuid(u) if u.get_version_num() == 7));
        assert_eq!(values[1], Value::I32(1));
        assert!(matches!(values[2], Value::TimestampTz(_)));

        let given = Uuid::now_v7();
        let mut values = vec![Value::Uuid(given), Value::I32(3), Value::Null];
        stamp_new(&SCHEMA, &mut values, Utc::now());
        assert_eq!(values[0], Value::Uuid(given));
    }
}
