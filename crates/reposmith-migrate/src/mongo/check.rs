//! Live drift of MongoDB collections: missing collections, a validator
//! other than the entities', missing, extra or different indexes (keys in
//! order, uniqueness, TTL). Search indexes are not read back (Atlas only).

use futures_util::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use serde_json::{Value, json};

use super::model::{Collection, MongoSnapshot};
use crate::error::{Error, Result};

/// Every difference between the live database and `expected`, one readable
/// line each; empty when there is no drift.
pub async fn drift_mongo(db: &Database, expected: &MongoSnapshot) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for collection in &expected.collections {
        problems.extend(collection_drift(db, collection).await?);
    }
    Ok(problems)
}

async fn collection_drift(db: &Database, want: &Collection) -> Result<Vec<String>> {
    let name = &want.name;
    let specs: Vec<mongodb::results::CollectionSpecification> = db
        .list_collections()
        .filter(doc! {"name": name})
        .await
        .map_err(Error::Mongo)?
        .try_collect()
        .await
        .map_err(Error::Mongo)?;
    let Some(spec) = specs.first() else {
        return Ok(vec![format!("collection {name}: missing")]);
    };
    let mut problems = Vec::new();
    let live_validator = spec
        .options
        .validator
        .clone()
        .map(|v| to_json(&Bson::Document(v)))
        .unwrap_or(Value::Null);
    if live_validator != want.validator {
        problems.push(format!(
            "collection {name}: validator differs from the entity's (live: {live_validator})"
        ));
    }
    let live: Vec<Document> = db
        .collection::<Document>(name)
        .list_indexes()
        .await
        .map_err(Error::Mongo)?
        .map_ok(|model| index_json(&model))
        .try_collect()
        .await
        .map_err(Error::Mongo)?;
    problems.extend(compare_indexes(name, &want.indexes, &live));
    Ok(problems)
}

/// An index as the model spells it: `{key: [[field, dir]..], name, unique?, expireAfterSeconds?}`.
fn index_json(model: &mongodb::IndexModel) -> Document {
    let keys: Vec<Bson> = model
        .keys
        .iter()
        .map(|(field, dir)| Bson::Array(vec![Bson::String(field.clone()), dir.clone()]))
        .collect();
    let mut spec = doc! {"key": keys};
    if let Some(options) = &model.options {
        if let Some(name) = &options.name {
            spec.insert("name", name.clone());
        }
        if options.unique == Some(true) {
            spec.insert("unique", true);
        }
        if let Some(ttl) = options.expire_after {
            spec.insert("expireAfterSeconds", ttl.as_secs() as i64);
        }
        if let Some(partial) = &options.partial_filter_expression {
            spec.insert("partialFilterExpression", partial.clone());
        }
    }
    spec
}

fn compare_indexes(collection: &str, want: &[Value], live: &[Document]) -> Vec<String> {
    // Numbers compare as numbers whatever their BSON width.
    let normal = |d: &Document| normalise(&to_json(&Bson::Document(d.clone())));
    let live: Vec<Value> = live.iter().map(normal).collect();
    let named = |list: &[Value], name: &str| list.iter().find(|i| i["name"] == name).cloned();
    let mut problems = Vec::new();
    for index in want {
        let name = index["name"].as_str().unwrap_or_default();
        match named(&live, name) {
            None => problems.push(format!("collection {collection}: missing index {name}")),
            Some(found) if found != normalise(index) => problems.push(format!(
                "collection {collection}: index {name} is {found}, the entity wants {index}"
            )),
            Some(_) => {}
        }
    }
    for index in &live {
        let name = index["name"].as_str().unwrap_or_default();
        if name != "_id_" && named(want, name).is_none() {
            problems.push(format!(
                "collection {collection}: extra index {name} ({index})"
            ));
        }
    }
    problems
}

/// Integers as `i64` JSON numbers, floats with integral values too (`1.0` → `1`).
fn normalise(value: &Value) -> Value {
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => json!(i),
            (None, Some(f)) if f.fract() == 0.0 => json!(f as i64),
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), normalise(v))).collect())
        }
        other => other.clone(),
    }
}

/// The JSON form of the BSON a validator or index spec holds (strings,
/// numbers, booleans, null, arrays, documents; anything else as its
/// display form, which then shows up as a difference).
pub(super) fn to_json(value: &Bson) -> Value {
    match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => json!(b),
        Bson::Int32(n) => json!(n),
        Bson::Int64(n) => json!(n),
        Bson::Double(f) => json!(f),
        Bson::String(s) => json!(s),
        Bson::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Bson::Document(d) => {
            Value::Object(d.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        other => json!(other.to_string()),
    }
}
