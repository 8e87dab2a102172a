//! The `backfill` step: documents stored before their entity soft-deleted
//! get its soft-delete key, set to `null` (live).
//!
//! A soft-deleting entity's unique indexes are partial over
//! `{key: {$type: "null"}}` (see `reposmith-mongo`'s index specs): a
//! document without the key is outside them, so two such documents could
//! share a "unique" value. The migration that introduces the key therefore
//! runs, before it builds those indexes,
//!
//! ```json
//! {"backfill": "<collection>", "field": "<key>", "batchSize": 1000, "maxTimeMS": 600000}
//! ```
//!
//! which reposmith runs itself (it is not a server command): batches of up
//! to `batchSize` `_id`s of documents without the key, each set with one
//! `update` (`{_id: {$in: ..}, key: {$exists: false}}` → `{$set: {key:
//! null}}`), until a batch comes back short. It is idempotent (a rerun
//! finds nothing left, or continues where a failed run stopped) and
//! bounded: every round trip carries the time left as its `maxTimeMS`, and
//! the step as a whole fails with [`Error::Backfill`] once `maxTimeMS` has
//! passed, saying how many documents it did (a write error the server
//! reports inside its reply is that error too). Both numbers
//! can be edited in the file before it is applied.
//!
//! The update bypasses document validation: it only adds a key the
//! validator admits, and a document that fails the new validator for
//! another reason is not this step's to judge.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The name of the step (the first key of its entry).
pub const STEP: &str = "backfill";

/// Documents per batch in a generated step.
pub const BATCH_SIZE: i64 = 1_000;

/// The generated step's time bound for the whole backfill.
pub const MAX_TIME: Duration = Duration::from_secs(600);

/// The step that gives `collection`'s documents without `field` the value `null`.
pub fn command(collection: &str, field: &str) -> Value {
    json!({
        STEP: collection,
        "field": field,
        "batchSize": BATCH_SIZE,
        "maxTimeMS": MAX_TIME.as_millis() as i64,
    })
}

/// The plan's line for the step.
pub(crate) fn note(collection: &str, field: &str) -> String {
    format!(
        "backfill: {collection}.{field} set to null on the documents stored without it \
         (they are live), in batches of {BATCH_SIZE}, before its partial unique indexes are built"
    )
}

/// One parsed step.
struct Backfill<'d> {
    collection: &'d str,
    field: &'d str,
    batch: i64,
    max_time: Duration,
}

impl<'d> Backfill<'d> {
    fn parse(step: &'d Document, path: &Path) -> Result<Backfill<'d>> {
        let bad = |message: &str| Error::BadFile {
            path: path.to_owned(),
            message: format!("backfill step {step}: {message}"),
        };
        let number = |key: &str| match step.get(key) {
            Some(Bson::Int32(n)) => Ok(i64::from(*n)),
            Some(Bson::Int64(n)) => Ok(*n),
            _ => Err(bad(&format!("`{key}` must be a positive integer"))),
        };
        let field = step
            .get_str("field")
            .map_err(|_| bad("`field` must be a string"))?;
        if field.is_empty() || field.starts_with('$') || field.contains('.') {
            return Err(bad("`field` must be a top-level key"));
        }
        let batch = number("batchSize")?;
        let max_time = number("maxTimeMS")?;
        if batch < 1 || max_time < 1 {
            return Err(bad("`batchSize` and `maxTimeMS` must be positive"));
        }
        Ok(Backfill {
            collection: step
                .get_str(STEP)
                .map_err(|_| bad("the collection must be a string"))?,
            field,
            batch,
            max_time: Duration::from_millis(max_time as u64),
        })
    }
}

/// Runs the step `step` of migration `version` (file `path`) on `db`;
/// returns how many documents it changed.
pub(crate) async fn run(db: &Database, step: &Document, version: i64, path: &Path) -> Result<u64> {
    let step = Backfill::parse(step, path)?;
    let collection = db.collection::<Document>(step.collection);
    let missing = doc! { step.field: { "$exists": false } };
    let deadline = Instant::now() + step.max_time;
    let failed = |source| Error::MongoCommand {
        version,
        path: path.to_owned(),
        source,
    };
    let mut done = 0_u64;
    let stopped = |done, reason| Error::Backfill {
        version,
        path: path.to_owned(),
        collection: step.collection.to_owned(),
        field: step.field.to_owned(),
        done,
        reason,
    };
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            let reason = format!("took longer than its maxTimeMS ({:?})", step.max_time);
            return Err(stopped(done, reason));
        };
        let left = left.max(Duration::from_millis(1));
        let ids: Vec<Bson> = collection
            .find(missing.clone())
            .projection(doc! { "_id": 1 })
            .limit(step.batch)
            .max_time(left)
            .await
            .map_err(failed)?
            .map_ok(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
            .try_collect()
            .await
            .map_err(failed)?;
        let found = ids.len() as i64;
        if found > 0 {
            let mut matcher = missing.clone();
            matcher.insert("_id", doc! { "$in": ids });
            let reply = db
                .run_command(doc! {
                    "update": step.collection,
                    "updates": [{ "q": matcher, "u": { "$set": { step.field: Bson::Null } }, "multi": true }],
                    "bypassDocumentValidation": true,
                    "maxTimeMS": left.as_millis().min(i64::MAX as u128) as i64,
                })
                .await
                .map_err(failed)?;
            if let Ok(errors) = reply.get_array("writeErrors") {
                return Err(stopped(
                    done,
                    format!("the server refused the update: {errors:?}"),
                ));
            }
            done += reply_count(&reply);
        }
        if found < step.batch {
            return Ok(done);
        }
    }
}

/// `nModified` of an `update` reply.
fn reply_count(reply: &Document) -> u64 {
    match reply.get("nModified") {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_names_the_collection_and_key_and_is_bounded() {
        let step = command("notes", "deleted_at");
        assert_eq!(step[STEP], "notes");
        assert_eq!(step["field"], "deleted_at");
        assert_eq!(step["batchSize"], BATCH_SIZE);
        assert_eq!(step["maxTimeMS"], 600_000);
        assert!(note("notes", "deleted_at").contains("notes.deleted_at"));
    }

    #[test]
    fn steps_that_would_touch_another_key_are_refused() {
        let path = Path::new("0002_x.json");
        for step in [
            doc! { STEP: "c", "field": "a.b", "batchSize": 1, "maxTimeMS": 1 },
            doc! { STEP: "c", "field": "$set", "batchSize": 1, "maxTimeMS": 1 },
            doc! { STEP: "c", "field": "k", "batchSize": 0, "maxTimeMS": 1 },
            doc! { STEP: "c", "field": "k", "batchSize": 1 },
        ] {
            let err = Backfill::parse(&step, path).err().expect("refused");
            assert!(err.to_string().contains("0002_x.json"), "{err}");
        }
        let ok = doc! { STEP: "c", "field": "k", "batchSize": 5_i64, "maxTimeMS": 10 };
        let parsed = Backfill::parse(&ok, path).unwrap();
        assert_eq!(
            (parsed.collection, parsed.field, parsed.batch),
            ("c", "k", 5)
        );
    }
}
