//! What a MongoDB collection needs from an entity schema: B-tree indexes
//! (unique, compound; the id column is `_id`), a text index over the
//! `#[repo(full_text)]` fields, a `$jsonSchema` validator matching how
//! `reposmith-mongo` encodes each type, a TTL index for a `#[repo(ttl)]`
//! field, and Atlas Vector Search index definitions for vector fields.

use mongodb::bson::Bson;
use reposmith_core::{ColumnDef, ColumnType, EntitySchema};
use reposmith_mongo::{IndexKey, MongoIndex};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The MongoDB state a set of Mongo migrations produces (`mongo/snapshot.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MongoSnapshot {
    /// Collections, in registration order.
    pub collections: Vec<Collection>,
}

/// One collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    /// Collection name.
    pub name: String,
    /// Indexes besides `_id`, as `createIndexes` specs (`key`, `name`,
    /// `unique`), except that `key` is a list of `[field, direction]` pairs:
    /// a compound index's key order matters and JSON objects here do not
    /// keep theirs. [`apply_mongo`](super::apply_mongo) turns the list into
    /// the ordered key document.
    pub indexes: Vec<Value>,
    /// The `validator` document (`{"$jsonSchema": ...}`).
    pub validator: Value,
    /// Atlas Vector Search index specs (`name`, `type`, `definition`).
    pub search_indexes: Vec<Value>,
    /// The `#[repo(soft_delete)]` key, when the entity soft-deletes: a
    /// migration that introduces it sets it to `null` on the documents
    /// stored without it (see [`backfill`](super::backfill)). Absent from
    /// the snapshot file otherwise, so snapshots written before the field
    /// existed read back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_delete: Option<String>,
}

impl MongoSnapshot {
    /// The model of `schemas`.
    pub fn from_schemas<'a>(schemas: impl IntoIterator<Item = &'a EntitySchema>) -> Self {
        MongoSnapshot {
            collections: schemas.into_iter().map(Collection::from_schema).collect(),
        }
    }

    /// The collection named `name`.
    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections.iter().find(|c| c.name == name)
    }
}

impl Collection {
    /// The model of one entity schema. Index names, the TTL lifetime and the
    /// search index definitions are `reposmith-mongo`'s, so a migrated
    /// collection has exactly the indexes the backend would create.
    pub fn from_schema(schema: &EntitySchema) -> Collection {
        let indexes = reposmith_mongo::index_specs(schema)
            .into_iter()
            .chain(reposmith_mongo::text_index(schema))
            .map(|index| index_json(&index))
            .collect();
        Collection {
            name: schema.collection.to_owned(),
            indexes,
            validator: validator(schema),
            search_indexes: reposmith_mongo::search_index_definitions(schema)
                .iter()
                .map(|definition| {
                    serde_json::to_value(definition)
                        .expect("a BSON document of strings and numbers")
                })
                .collect(),
            soft_delete: schema
                .soft_delete_column()
                .map(|(_, column)| column.name.to_owned()),
        }
    }

    /// The index spec named `name`.
    pub fn index(&self, name: &str) -> Option<&Value> {
        self.indexes.iter().find(|i| i["name"] == name)
    }

    /// The search index spec named `name`.
    pub fn search_index(&self, name: &str) -> Option<&Value> {
        self.search_indexes.iter().find(|i| i["name"] == name)
    }
}

/// `{"key": [[field, 1 | "text"], ..], "name": .., "unique"?: true,
/// "expireAfterSeconds"?: n, "partialFilterExpression"?: {..}}`: the key as
/// a list, which keeps its order.
fn index_json(index: &MongoIndex) -> Value {
    let keys: Vec<Value> = index
        .keys
        .iter()
        .map(|(field, kind)| match kind {
            IndexKey::Text => json!([field, "text"]),
            _ => json!([field, 1]),
        })
        .collect();
    let mut spec = json!({"key": keys, "name": index.name});
    if index.unique {
        spec["unique"] = json!(true);
    }
    if let Some(seconds) = index.expire_after_seconds {
        spec["expireAfterSeconds"] = json!(seconds);
    }
    if let Some(partial) = &index.partial_filter {
        let partial = super::check::to_json(&Bson::Document(partial.clone()));
        spec["partialFilterExpression"] = partial;
    }
    spec
}

/// `{"$jsonSchema": {bsonType: object, required: [...], properties: {...}}}`:
/// every non-`Option` field required, each with the BSON type the
/// repository writes (`Option` fields also accept `null`).
fn validator(schema: &EntitySchema) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (i, column) in schema.columns.iter().enumerate() {
        let name = if i == schema.id { "_id" } else { column.name };
        if !column.nullable {
            required.push(json!(name));
        }
        properties.insert(name.to_owned(), property(column));
    }
    json!({"$jsonSchema": {
        "bsonType": "object",
        "required": required,
        "properties": properties,
    }})
}

/// One field's rule; JSON and vector fields accept any type.
fn property(column: &ColumnDef) -> Value {
    let Some(ty) = bson_type(&column.ty) else {
        return json!({});
    };
    let ty = if column.nullable {
        json!([ty, "null"])
    } else {
        json!(ty)
    };
    let mut rule = json!({ "bsonType": ty });
    if let ColumnType::Enum(values) = column.ty {
        let mut allowed: Vec<Value> = values.iter().map(|v| json!(v)).collect();
        if column.nullable {
            allowed.push(Value::Null);
        }
        rule["enum"] = Value::Array(allowed);
    }
    rule
}

/// The BSON type `reposmith-mongo`'s codec writes for `ty`.
fn bson_type(ty: &ColumnType) -> Option<&'static str> {
    Some(match ty {
        ColumnType::Text | ColumnType::Enum(_) => "string",
        ColumnType::Bool => "bool",
        ColumnType::SmallInt | ColumnType::Int => "int",
        ColumnType::BigInt => "long",
        ColumnType::Real | ColumnType::Double => "double",
        ColumnType::Uuid => "binData",
        ColumnType::ObjectId => "objectId",
        ColumnType::TimestampTz | ColumnType::Date => "date",
        ColumnType::Array(_) => "array",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use reposmith_core::{
        ColumnRole, Distance, IdStrategy, IndexDef, IndexMethod, VectorIndex, VectorKind,
        VectorSpec,
    };

    use super::*;

    static COLUMNS: [ColumnDef; 5] = [
        ColumnDef::new("id", "id", ColumnType::Uuid, false).with_role(ColumnRole::Id),
        ColumnDef::new("title", "title", ColumnType::Text, false).with_full_text("english"),
        ColumnDef::new("body", "body", ColumnType::Text, true).with_full_text("english"),
        ColumnDef::new("seen", "seen", ColumnType::TimestampTz, false).with_ttl(3600),
        ColumnDef::new("emb", "emb", ColumnType::Vector(VectorKind::Dense), true).with_vector(
            VectorSpec::new(
                VectorKind::Dense,
                3,
                Distance::Cosine,
                VectorIndex::Hnsw {
                    m: 16,
                    ef_construction: 64,
                },
            ),
        ),
    ];
    static INDEXES: [IndexDef; 1] = [IndexDef::new(
        "t_title_body_idx",
        &["title", "body"],
        false,
        IndexMethod::BTree,
    )];
    static SCHEMA: EntitySchema =
        EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::ClientUuid, &INDEXES);

    #[test]
    fn compound_text_ttl_and_vector_search_indexes() {
        let c = Collection::from_schema(&SCHEMA);
        assert_eq!(
            c.indexes,
            [
                json!({"key": [["title", 1], ["body", 1]], "name": "t_title_body_idx"}),
                json!({"key": [["seen", 1]], "name": "t_seen_ttl", "expireAfterSeconds": 3600}),
                json!({"key": [["title", "text"], ["body", "text"]], "name": "t_text"}),
            ]
        );
        let fields = &c.search_indexes[0]["definition"]["fields"];
        assert_eq!(c.search_indexes[0]["name"], "t_emb_vector");
        assert_eq!(
            fields[0],
            json!({"type": "vector", "path": "emb", "numDimensions": 3, "similarity": "cosine"})
        );
        assert_eq!(fields[1], json!({"type": "filter", "path": "_id"}));
        let schema = &c.validator["$jsonSchema"];
        assert_eq!(schema["required"], json!(["_id", "title", "seen"]));
        assert_eq!(
            schema["properties"]["body"],
            json!({"bsonType": ["string", "null"]})
        );
    }
}
