//! What the repository manages about a row before it is written: the
//! generated id, the version and the timestamps, taken from the backend's
//! [`Clock`].

use reposmith_core::{Clock, ColumnRole, EntitySchema, Value};

/// Stamps a row for INSERT (and for the insert half of an upsert): a v7 id
/// for a nil client UUID, version 1, `created_at` and `updated_at` at the
/// clock's time.
pub(crate) fn stamp_new(schema: &EntitySchema, values: &mut [Value], clock: &Clock) {
    reposmith_core::stamp::stamp_new(schema, values, clock.now());
}

/// Stamps a row for UPDATE: `updated_at` at the clock's time; the version
/// and `created_at` are not written by an update.
pub(crate) fn stamp_update(schema: &EntitySchema, values: &mut [Value], clock: &Clock) {
    if let Some((i, _)) = schema.column_with_role(ColumnRole::UpdatedAt) {
        values[i] = Value::TimestampTz(clock.now());
    }
}

pub(crate) use reposmith_core::stamp::{id_text, version_number};
