//! Atlas vector search indexes: their names and definitions from the schema,
//! and whether a rendered filter can be one of their pre-filters.
//!
//! One `vectorSearch` index per indexed dense or half vector column with a
//! cosine or l2 distance, named `<collection>_<column>_vector`, declaring the
//! vector (dimensions, similarity) and every scalar column as a `filter`
//! field. A `$vectorSearch` pre-filter may only use those fields and the
//! operators Atlas lists for it; any other filter (JSON paths, `LIKE`, which
//! renders as `$regex`) makes the search take the exact plan instead.
//!
//! Atlas builds a search index in the background; `ensure_indexes` waits
//! (within the operation deadline) until it is queryable, because a
//! `$vectorSearch` on an index still building returns no hits.
//! This path is written against Atlas' documented commands and covered by
//! unit tests of its documents only: the test server has no search.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use reposmith_core::{
    Backend, ColumnType, Distance, Entity, EntitySchema, Error, Result, VectorIndex, VectorKind,
};

use crate::MongoBackend;
use crate::codec::key;

/// Operators a `$vectorSearch` filter accepts.
const FILTER_OPERATORS: &[&str] = &[
    "$and", "$or", "$nor", "$not", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
    "$exists",
];

/// MongoDB's "index already exists" code.
const INDEX_ALREADY_EXISTS: i32 = 68;

/// The name of the vector search index on the column at `column`:
/// `<collection>_<column>_vector`.
pub fn search_index_name(schema: &EntitySchema, column: usize) -> String {
    format!(
        "{}_{}_vector",
        schema.collection, schema.columns[column].name
    )
}

/// Columns a vector search index declares as filter fields.
fn is_filter_type(ty: &ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::Text
            | ColumnType::Bool
            | ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::Real
            | ColumnType::Double
            | ColumnType::Uuid
            | ColumnType::ObjectId
            | ColumnType::TimestampTz
            | ColumnType::Date
            | ColumnType::Enum(_)
    )
}

fn filter_keys(schema: &EntitySchema) -> impl Iterator<Item = &'static str> + '_ {
    (0..schema.columns.len())
        .filter(|i| is_filter_type(&schema.columns[*i].ty))
        .map(|i| key(schema, i))
}

/// Whether every operator of `filter` is one `$vectorSearch` accepts and
/// every field one the index declares.
pub(crate) fn filter_is_indexable(schema: &EntitySchema, filter: &Document) -> bool {
    let fields: Vec<&str> = filter_keys(schema).collect();
    filter.iter().all(|(k, v)| {
        let allowed = match k.strip_prefix('$') {
            Some(_) => FILTER_OPERATORS.contains(&k.as_str()),
            None => fields.contains(&k.as_str()),
        };
        allowed && bson_is_indexable(schema, v)
    })
}

fn bson_is_indexable(schema: &EntitySchema, value: &Bson) -> bool {
    match value {
        Bson::Document(d) => filter_is_indexable(schema, d),
        Bson::Array(items) => items.iter().all(|i| bson_is_indexable(schema, i)),
        _ => true,
    }
}

/// Atlas' `similarity` for `distance`, when Atlas vector search offers it:
/// `cosine`, and `euclidean` for l2. Its `dotProduct` assumes unit vectors,
/// which pgvector's inner product does not, so other distances have none.
pub fn vector_similarity(distance: Distance) -> Option<&'static str> {
    match distance {
        Distance::Cosine => Some("cosine"),
        Distance::L2 => Some("euclidean"),
        _ => None,
    }
}

/// The `createSearchIndexes` entries of `schema` (`name`, `type`,
/// `definition`): one per indexed dense or half vector column whose distance
/// has a [`vector_similarity`]. Migrations write these same documents.
pub fn search_index_definitions(schema: &EntitySchema) -> Vec<Document> {
    let filters: Vec<Bson> = filter_keys(schema)
        .map(|k| Bson::Document(doc! { "type": "filter", "path": k }))
        .collect();
    let mut models = Vec::new();
    for (i, column) in schema.columns.iter().enumerate() {
        let Some(spec) = column.vector else { continue };
        let Some(similarity) = vector_similarity(spec.distance) else {
            continue;
        };
        if !matches!(spec.kind, VectorKind::Dense | VectorKind::Half)
            || spec.index == VectorIndex::None
        {
            continue;
        }
        let mut fields = vec![Bson::Document(doc! {
            "type": "vector",
            "path": key(schema, i),
            "numDimensions": i64::from(spec.dims),
            "similarity": similarity,
        })];
        fields.extend(filters.iter().cloned());
        models.push(doc! {
            "name": search_index_name(schema, i),
            "type": "vectorSearch",
            "definition": { "fields": fields },
        });
    }
    models
}

impl MongoBackend {
    /// Creates `E`'s vector search indexes and waits until they are
    /// queryable; a no-op on servers without search.
    pub(crate) async fn ensure_search_indexes<E: Entity>(&self) -> Result<()> {
        let models = search_index_definitions(E::SCHEMA);
        if models.is_empty() || !self.capabilities().vector_search {
            return Ok(());
        }
        let names: Vec<String> = models
            .iter()
            .filter_map(|m| m.get_str("name").ok().map(str::to_owned))
            .collect();
        let command = doc! { "createSearchIndexes": E::SCHEMA.collection, "indexes": models };
        match self.database().run_command(command).await {
            Err(e) if command_code(&e) == Some(INDEX_ALREADY_EXISTS) => {}
            other => {
                other.map_err(|e| self.map_error(e))?;
            }
        }
        self.wait_queryable(E::SCHEMA.collection, &names).await
    }

    /// Polls `$listSearchIndexes` until every index in `names` is queryable.
    async fn wait_queryable(&self, table: &str, names: &[String]) -> Result<()> {
        let collection = self.database().collection::<Document>(table);
        let deadline = tokio::time::Instant::now() + self.operation_timeout();
        loop {
            let listed: Vec<Document> = collection
                .aggregate(vec![doc! { "$listSearchIndexes": {} }])
                .await
                .map_err(|e| self.map_error(e))?
                .try_collect()
                .await
                .map_err(|e| self.map_error(e))?;
            let ready = |name: &String| {
                listed.iter().any(|i| {
                    i.get_str("name").ok() == Some(name.as_str())
                        && i.get_bool("queryable").ok() == Some(true)
                })
            };
            if names.iter().all(ready) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    backend: Backend::Mongo,
                    operation: "search index build",
                    after: self.operation_timeout(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match &*err.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use reposmith_core::{ColumnDef, IdStrategy, VectorSpec};

    use super::*;

    const COLUMNS: &[ColumnDef] = &[
        ColumnDef::new("id", "id", ColumnType::BigInt, false),
        ColumnDef::new("lang", "lang", ColumnType::Text, false),
        ColumnDef::new("meta", "meta", ColumnType::Json, false),
        ColumnDef::new("e", "e", ColumnType::Vector(VectorKind::Dense), false).with_vector(
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
        ColumnDef::new("s", "s", ColumnType::Vector(VectorKind::Sparse), false).with_vector(
            VectorSpec::new(VectorKind::Sparse, 3, Distance::L2, VectorIndex::None),
        ),
    ];
    const SCHEMA: EntitySchema =
        EntitySchema::new("T", "things", COLUMNS, 0, IdStrategy::Assigned, &[]);

    #[test]
    fn one_index_per_eligible_column_with_scalar_filter_fields() {
        let models = search_index_definitions(&SCHEMA);
        assert_eq!(models.len(), 1);
        let expected = doc! {
            "name": "things_e_vector",
            "type": "vectorSearch",
            "definition": { "fields": [
                { "type": "vector", "path": "e", "numDimensions": 3_i64, "similarity": "cosine" },
                { "type": "filter", "path": "_id" },
                { "type": "filter", "path": "lang" },
            ] },
        };
        assert_eq!(models[0], expected);
    }

    #[test]
    fn only_declared_fields_and_listed_operators_pre_filter() {
        let ok = doc! { "$and": [{ "lang": { "$eq": "en" } }, { "_id": { "$in": [1, 2] } }] };
        assert!(filter_is_indexable(&SCHEMA, &ok));
        assert!(filter_is_indexable(&SCHEMA, &doc! {}));
        assert!(!filter_is_indexable(
            &SCHEMA,
            &doc! { "meta.k": { "$eq": 1 } }
        ));
        assert!(!filter_is_indexable(
            &SCHEMA,
            &doc! { "lang": { "$regex": "^a" } }
        ));
    }
}
