//! What the repository manages about a document before it is written (the
//! generated id, the version, the timestamps) and the update documents of
//! `update` and `upsert`.
//!
//! Timestamps are taken at BSON's millisecond precision, so the entity a
//! write returns equals the one a later read returns. Because two writes can
//! fall in one millisecond, an update sets `updated_at` to at least one
//! millisecond past the value the caller read: `updated_at` grows with every
//! version, as it does on Postgres' microsecond clock. The time is the
//! backend's [`Clock`]'s (so with a fixed test clock, an update the clock
//! was not advanced for still moves `updated_at` by that one millisecond).

use chrono::TimeDelta;
use mongodb::bson::{Bson, Document};
use reposmith_core::{Clock, ColumnRole, EntitySchema, Result, Value};

use crate::codec::{key, to_bson, to_millis};

/// Stamps a document-to-be for insert: a v7 id for a nil client UUID,
/// version 1, `created_at` and `updated_at` at the clock's time, at
/// millisecond precision.
pub(crate) fn stamp_new(schema: &EntitySchema, values: &mut [Value], clock: &Clock) {
    reposmith_core::stamp::stamp_new(schema, values, to_millis(clock.now()));
}

/// Sets `updated_at` for an update: the clock's time, or one millisecond
/// past the value the caller holds when the clock has not moved on since.
pub(crate) fn stamp_update(schema: &EntitySchema, values: &mut [Value], clock: &Clock) {
    let Some((i, _)) = schema.column_with_role(ColumnRole::UpdatedAt) else {
        return;
    };
    let now = to_millis(clock.now());
    let next = match &values[i] {
        Value::TimestampTz(read) => now.max(to_millis(*read) + TimeDelta::milliseconds(1)),
        _ => now,
    };
    values[i] = Value::TimestampTz(next);
}

/// The `$inc` operand that bumps a version of `value`'s width by one.
fn increment(value: &Value) -> Bson {
    match value {
        Value::I16(_) | Value::I32(_) => Bson::Int32(1),
        _ => Bson::Int64(1),
    }
}

pub(crate) use reposmith_core::stamp::{id_text, version_number};

/// The update document of `update` (`upsert: false`) and `upsert`: every
/// data field and `updated_at` set, the version incremented, `created_at`
/// kept (an upsert sets it only when it inserts); the soft-delete key is
/// set by an upsert (which revives a deleted document with the entity's
/// value) and never by an update.
pub(crate) fn update_doc(
    schema: &EntitySchema,
    values: &[Value],
    upsert: bool,
) -> Result<Document> {
    let (mut set, mut on_insert, mut inc) = (Document::new(), Document::new(), Document::new());
    for (i, (column, value)) in schema.columns.iter().zip(values).enumerate() {
        let bson = || to_bson(schema.entity, column.field, value);
        match column.role {
            ColumnRole::Id => {}
            ColumnRole::Version => {
                inc.insert(key(schema, i), increment(value));
            }
            ColumnRole::CreatedAt if upsert => {
                on_insert.insert(key(schema, i), bson()?);
            }
            ColumnRole::CreatedAt => {}
            // Only delete, restore and upsert change whether a row is deleted.
            ColumnRole::SoftDelete if !upsert => {}
            _ => {
                set.insert(key(schema, i), bson()?);
            }
        }
    }
    let mut update = Document::new();
    for (operator, operand) in [("$set", set), ("$setOnInsert", on_insert), ("$inc", inc)] {
        // MongoDB refuses an empty operator document.
        if !operand.is_empty() {
            update.insert(operator, operand);
        }
    }
    Ok(update)
}
