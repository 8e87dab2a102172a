//! What the repository manages about a row before it is written: the
//! generated id, the version and the timestamps.

use chrono::Utc;
use reposmith_core::{ColumnRole, EntitySchema, Value};

/// Stamps a row for INSERT (and for the insert half of an upsert): a v7 id
/// for a nil client UUID, version 1, `created_at` and `updated_at` now.
pub(crate) fn stamp_new(schema: &EntitySchema, values: &mut [Value]) {
    reposmith_core::stamp::stamp_new(schema, values, Utc::now());
}

/// Stamps a row for UPDATE: `updated_at` now; the version and `created_at`
/// are not written by an update.
pub(crate) fn stamp_update(schema: &EntitySchema, values: &mut [Value]) {
    if let Some((i, _)) = schema.column_with_role(ColumnRole::UpdatedAt) {
        values[i] = Value::TimestampTz(Utc::now());
    }
}

pub(crate) use reposmith_core::stamp::{id_text, version_number};
