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

/// What a soft delete (or a restore) writes besides the soft-delete column:
/// the columns a backend stamps in the same statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SoftDeleteStamp {
    /// Position of the `#[repo(soft_delete)]` column.
    pub column: usize,
    /// Position of the `updated_at` column, stamped with the same time, if any.
    pub updated_at: Option<usize>,
    /// Position of the version column, bumped by one, if any.
    pub version: Option<usize>,
}

/// How rows of `schema` are soft-deleted; `None` when the entity has no
/// `#[repo(soft_delete)]` column (its deletes remove rows).
pub fn soft_delete_stamp(schema: &EntitySchema) -> Option<SoftDeleteStamp> {
    let (column, _) = schema.soft_delete_column()?;
    Some(SoftDeleteStamp {
        column,
        updated_at: schema
            .column_with_role(ColumnRole::UpdatedAt)
            .map(|(i, _)| i),
        version: schema.version_column().map(|(i, _)| i),
    })
}

/// The earliest cutoff [`purge_cutoff`] gives: 0001-01-01T00:00:00Z, a time
/// every backend stores and sends (PostgreSQL's `timestamptz` starts in
/// 4713 BC, and MongoDB servers and drivers built on calendar types refuse
/// years before 1), so a span reaching further is refused before the wire
/// with the same typed error on both backends rather than a server error.
pub const EARLIEST_PURGE_CUTOFF: DateTime<Utc> =
    DateTime::<Utc>::from_timestamp(-62_135_596_800, 0)
        .expect("0001-01-01T00:00:00Z is representable");

/// The instant before which soft-deleted rows are purged by
/// `purge_deleted(older_than)`: `now - older_than`. A span reaching before
/// [`EARLIEST_PURGE_CUTOFF`] is [`Error::InvalidInput`](crate::Error::InvalidInput).
pub fn purge_cutoff(
    entity: &'static str,
    now: DateTime<Utc>,
    older_than: std::time::Duration,
) -> crate::Result<DateTime<Utc>> {
    chrono::TimeDelta::from_std(older_than)
        .ok()
        .and_then(|span| now.checked_sub_signed(span))
        .filter(|cutoff| *cutoff >= EARLIEST_PURGE_CUTOFF)
        .ok_or_else(|| {
            crate::Error::invalid(
                entity,
                "older_than",
                "reaches before the earliest timestamp that can be stored",
            )
        })
}

/// The error of a soft-delete operation on an entity without
/// `#[repo(soft_delete)]`.
pub fn not_soft_deleting(entity: &'static str, operation: &str) -> crate::Error {
    crate::Error::invalid(
        entity,
        operation,
        "the entity has no #[repo(soft_delete)] field: its rows are deleted, not soft-deleted",
    )
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

    #[test]
    fn purge_cutoffs_refuse_spans_past_the_calendar() {
        let now = Utc::now();
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(
            purge_cutoff("T", now, day).unwrap(),
            now - chrono::TimeDelta::days(1)
        );
        let millennia = std::time::Duration::from_secs(10_000 * 366 * 86_400);
        assert!(matches!(
            purge_cutoff("T", now, millennia),
            Err(crate::Error::InvalidInput { .. })
        ));
        let to_year_one = (now - EARLIEST_PURGE_CUTOFF).to_std().unwrap();
        assert_eq!(
            purge_cutoff("T", now, to_year_one).unwrap(),
            EARLIEST_PURGE_CUTOFF
        );
        let forever = std::time::Duration::from_secs(u64::MAX);
        assert!(matches!(
            purge_cutoff("T", now, forever),
            Err(crate::Error::InvalidInput { .. })
        ));
    }
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
