//! JSON filters on sub-documents: containment (`@>`), path equality (which
//! the core expresses as containment) and key existence, as dotted paths.
//!
//! Containment follows Postgres' `@>` key by key: an object contains an
//! object whose every key it holds with a contained value; an array
//! contains an array whose every element matches one of its elements; a
//! scalar equals a scalar of the same JSON type (`1` is not `"1"`). Where
//! MongoDB's dotted paths reach *through* arrays (`a.b` also matches
//! `{"a": [{"b": …}]}`), MongoDB matches more than Postgres would; a path
//! key that is a number also addresses an array position. Both are
//! documented departures, not hidden ones.
//!
//! Keys that start with `$`, contain `.` or are empty are refused with
//! [`Error::InvalidInput`]: they would become operators or other paths.

use mongodb::bson::{Bson, Document, doc};
use reposmith_core::{ColumnDef, Error, Result};

use crate::codec::{check_json_key, json_to_bson};
use crate::render::op;

/// Rows where the column `key` contains `document` (TRUE form), or does
/// not (FALSE form; a NULL column is neither).
pub(crate) fn contains(
    entity: &'static str,
    key: &str,
    column: &ColumnDef,
    document: &serde_json::Value,
    truth: bool,
) -> Result<Document> {
    let json = Json {
        entity,
        field: column.field,
    };
    let matches = json.contained(key, document)?;
    Ok(negate_unless(truth, key, column, matches))
}

/// Rows whose column `key` has `name` inside the object at `path`.
pub(crate) fn has_key(
    entity: &'static str,
    key: &str,
    column: &ColumnDef,
    path: &[String],
    name: &str,
    truth: bool,
) -> Result<Document> {
    let json = Json {
        entity,
        field: column.field,
    };
    let mut dotted = key.to_owned();
    for part in path.iter().map(String::as_str).chain([name]) {
        dotted = json.join(&dotted, part)?;
    }
    let matches = op(&dotted, "$exists", true);
    Ok(negate_unless(truth, key, column, matches))
}

/// `matches` itself, or for the FALSE form the rows it does not match minus
/// the SQL NULL ones (a non-nullable column has none: its BSON null is JSON null).
fn negate_unless(truth: bool, key: &str, column: &ColumnDef, matches: Document) -> Document {
    if truth {
        return matches;
    }
    let negated = doc! { "$nor": [matches] };
    if column.nullable {
        doc! { "$and": [negated, op(key, "$ne", Bson::Null)] }
    } else {
        negated
    }
}

struct Json {
    entity: &'static str,
    field: &'static str,
}

impl Json {
    fn join(&self, prefix: &str, part: &str) -> Result<String> {
        check_json_key(self.entity, self.field, part)?;
        if part.is_empty() {
            return Err(Error::invalid(
                self.entity,
                self.field,
                "an empty JSON key cannot be a path step in MongoDB",
            ));
        }
        Ok(if prefix.is_empty() {
            part.to_owned()
        } else {
            format!("{prefix}.{part}")
        })
    }

    /// Rows whose value at `path` contains `json`.
    fn contained(&self, path: &str, json: &serde_json::Value) -> Result<Document> {
        use serde_json::Value as J;
        match json {
            J::Object(map) if map.is_empty() => Ok(op(path, "$type", "object")),
            J::Object(map) => {
                let parts = map
                    .iter()
                    .map(|(k, v)| self.contained(&self.join(path, k)?, v).map(Bson::Document))
                    .collect::<Result<Vec<_>>>()?;
                Ok(doc! { "$and": parts })
            }
            J::Array(items) => self.array(path, items),
            J::Null => Ok(op(path, "$type", "null")),
            scalar => {
                let v = json_to_bson(self.entity, self.field, scalar)?;
                // `$eq` alone would also match an array holding the value.
                let not_array = doc! { path: { "$not": { "$type": "array" } } };
                Ok(doc! { "$and": [op(path, "$eq", v), not_array] })
            }
        }
    }

    /// The value at `path` is an array with a match for every item.
    fn array(&self, path: &str, items: &[serde_json::Value]) -> Result<Document> {
        let mut parts = vec![Bson::Document(op(path, "$type", "array"))];
        for item in items {
            let part = match item {
                serde_json::Value::Object(map) if map.is_empty() => {
                    op(path, "$elemMatch", doc! { "$type": "object" })
                }
                serde_json::Value::Object(_) => op(path, "$elemMatch", self.contained("", item)?),
                serde_json::Value::Array(_) => {
                    let reason = "containment of nested arrays is not supported on MongoDB";
                    return Err(Error::invalid(self.entity, self.field, reason));
                }
                // `$eq` on an array field matches any element equal to the value.
                scalar => op(path, "$eq", json_to_bson(self.entity, self.field, scalar)?),
            };
            parts.push(Bson::Document(part));
        }
        Ok(doc! { "$and": parts })
    }
}
