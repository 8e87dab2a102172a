//! MongoDB: a fresh database per test (named like the test's other
//! stores), the application's MongoDB migrations (`<migrations>/mongo`)
//! applied through `reposmith-migrate`, JSON fixtures inserted, and the
//! database dropped after a passing test.
//!
//! A JSON fixture maps collection names to arrays of documents:
//! `{"traces": [{"_id": {"$oid": "65..."}, "at": {"$date": "2026-01-01T00:00:00Z"}}]}`.
//! Of MongoDB's extended JSON, `$oid` and `$date` (RFC 3339) are read;
//! integers become `Int32` when they fit, else `Int64`.

use std::path::Path;
use std::time::Duration;

use mongodb::Database;
use mongodb::bson::{Bson, DateTime, Document, oid::ObjectId};
use serde_json::Value;

use crate::error::{Error, Result};

/// Longest wait for another migrator's lock on the test's database (there
/// is none: the database is new; bounded all the same).
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Applies the MongoDB migrations in `migrations/mongo`, if that directory exists.
pub async fn migrate(db: &Database, migrations: &Path) -> Result<()> {
    let dir = reposmith_migrate::mongo::dir(migrations);
    if dir.is_dir() {
        reposmith_migrate::mongo::apply_mongo(&dir, db, LOCK_WAIT).await?;
    }
    Ok(())
}

/// Inserts the documents of the JSON fixture `path`.
pub async fn apply_fixture(db: &Database, path: &Path) -> Result<()> {
    let fixture = |reason: String| Error::Fixture {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fixture(e.to_string()))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| fixture(e.to_string()))?;
    let Value::Object(collections) = json else {
        return Err(fixture(
            "expected an object of collection names to arrays of documents".into(),
        ));
    };
    for (collection, docs) in collections {
        let Value::Array(docs) = docs else {
            return Err(fixture(format!(
                "{collection:?} is not an array of documents"
            )));
        };
        let mut batch = Vec::with_capacity(docs.len());
        for doc in &docs {
            match to_bson(doc).map_err(&fixture)? {
                Bson::Document(d) => batch.push(d),
                _ => return Err(fixture(format!("{collection:?} holds a non-document"))),
            }
        }
        if !batch.is_empty() {
            db.collection::<Document>(&collection)
                .insert_many(batch)
                .await
                .map_err(|e| fixture(e.to_string()))?;
        }
    }
    Ok(())
}

/// JSON to BSON, reading `{"$oid": ..}` and `{"$date": ..}`.
fn to_bson(value: &Value) -> std::result::Result<Bson, String> {
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
            (None, Some(f)) => Bson::Double(f),
            _ => {
                return Err(format!(
                    "number {n} does not fit a 64-bit integer or double"
                ));
            }
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect::<Result<_, _>>()?),
        Value::Object(map) => match (map.len(), map.iter().next()) {
            (1, Some((k, Value::String(hex)))) if k == "$oid" => {
                Bson::ObjectId(ObjectId::parse_str(hex).map_err(|e| format!("$oid {hex:?}: {e}"))?)
            }
            (1, Some((k, Value::String(date)))) if k == "$date" => Bson::DateTime(
                DateTime::parse_rfc3339_str(date).map_err(|e| format!("$date {date:?}: {e}"))?,
            ),
            _ => {
                let mut doc = Document::new();
                for (k, v) in map {
                    doc.insert(k, to_bson(v)?);
                }
                Bson::Document(doc)
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_json_reads_oid_and_date() {
        let doc = serde_json::json!({
            "_id": {"$oid": "65a1b2c3d4e5f60718293a4b"},
            "at": {"$date": "2026-01-01T00:00:00Z"},
            "n": 1, "big": 5_000_000_000_i64, "tags": ["a"], "nested": {"x": null}
        });
        let Bson::Document(d) = to_bson(&doc).unwrap() else {
            panic!("not a document")
        };
        assert!(matches!(d.get("_id"), Some(Bson::ObjectId(_))));
        assert!(matches!(d.get("at"), Some(Bson::DateTime(_))));
        assert_eq!(d.get("n"), Some(&Bson::Int32(1)));
        assert_eq!(d.get("big"), Some(&Bson::Int64(5_000_000_000)));
        assert!(to_bson(&serde_json::json!({"$oid": "zz"})).is_err());
    }
}
