//! Collections and indexes created from the entity schema, until migrations
//! cover MongoDB.
//!
//! Every B-tree [`IndexDef`](reposmith_core::IndexDef) becomes a MongoDB
//! index of the same name (so a conflict names the index the schema
//! declares, e.g. `docs_title_key`), unique where the schema says so. GIN
//! indexes (JSON containment on Postgres) have no MongoDB counterpart that
//! serves arbitrary paths, so they are skipped: path filters run unindexed
//! until a wildcard index is chosen deliberately.
//!
//! A `#[repo(ttl = "..")]` column gets a TTL index (`expireAfterSeconds`)
//! named `<collection>_<column>_ttl`, or the lifetime is added to the schema's own
//! single-column index on it (MongoDB refuses two indexes with one key
//! pattern). The server's TTL monitor deletes a document once its timestamp
//! is older than the lifetime, in a background pass (every 60 s on MongoDB),
//! so expired documents can still be read for a while. A changed lifetime is
//! applied to the existing index with `collMod`.
//!
//! On servers with search, vector search indexes are created too (see
//! [`crate::search_index`]).

use std::time::Duration;

use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use reposmith_core::{EntitySchema, IndexDef, IndexMethod, MongoEntity, Result};

use crate::MongoBackend;

/// MongoDB's "collection already exists" code.
const NAMESPACE_EXISTS: i32 = 48;

/// MongoDB's code for an index that exists with other options (a changed TTL).
const INDEX_OPTIONS_CONFLICT: i32 = 85;

/// MongoDB's code for an index name reused with another specification.
const INDEX_KEY_SPECS_CONFLICT: i32 = 86;

impl MongoBackend {
    /// Creates `E`'s collection if it is missing, then its indexes.
    ///
    /// Explicit creation matters inside transactions: servers before 4.4
    /// cannot create a collection implicitly there.
    pub async fn create_collections<E: MongoEntity>(&self) -> Result<()> {
        let created = self
            .database()
            .create_collection(E::SCHEMA.collection)
            .await;
        match created {
            Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => {}
            other => other.map_err(|e| self.map_error(e))?,
        }
        self.ensure_indexes::<E>().await
    }

    /// Creates the schema's indexes on `E`'s collection (and its TTL index,
    /// and on servers with search its vector search indexes); existing ones
    /// with the same definition are left as they are, a changed TTL is updated.
    pub async fn ensure_indexes<E: MongoEntity>(&self) -> Result<()> {
        let schema = E::SCHEMA;
        let collection = self.database().collection::<Document>(schema.collection);
        let models = index_models(schema);
        if !models.is_empty() {
            collection
                .create_indexes(models)
                .await
                .map_err(|e| self.map_error(e))?;
        }
        if let Some((model, name, ttl)) = ttl_index(schema) {
            self.ensure_ttl_index(&collection, model, name, ttl).await?;
        }
        self.ensure_search_indexes::<E>().await
    }
}

impl MongoBackend {
    /// Creates the TTL index; when one of that name exists with another
    /// lifetime, sets the schema's with `collMod` and creates again (now a
    /// no-op), so an index that differs in more than its lifetime still fails.
    async fn ensure_ttl_index(
        &self,
        collection: &mongodb::Collection<Document>,
        model: IndexModel,
        name: String,
        ttl: i64,
    ) -> Result<()> {
        let created = collection.create_index(model.clone()).await;
        // MongoDB reports the changed lifetime as 85; SecantusDB as 86.
        let code = created.as_ref().err().and_then(command_code);
        if !matches!(
            code,
            Some(INDEX_OPTIONS_CONFLICT | INDEX_KEY_SPECS_CONFLICT)
        ) {
            return created.map(drop).map_err(|e| self.map_error(e));
        }
        let index = doc! { "name": name, "expireAfterSeconds": ttl };
        let command = doc! { "collMod": collection.name(), "index": index };
        self.database()
            .run_command(command)
            .await
            .map_err(|e| self.map_error(e))?;
        collection
            .create_index(model)
            .await
            .map(drop)
            .map_err(|e| self.map_error(e))
    }
}

/// The schema's single-column B-tree index on `column`, if it declares one.
fn index_on<'s>(schema: &'s EntitySchema, column: &str) -> Option<&'s IndexDef> {
    schema
        .indexes
        .iter()
        .find(|i| i.method == IndexMethod::BTree && i.columns == [column])
}

/// The TTL index of `schema`'s `#[repo(ttl)]` column: its model, name and lifetime.
pub(crate) fn ttl_index(schema: &EntitySchema) -> Option<(IndexModel, String, i64)> {
    let (i, column, seconds) = schema.ttl_column()?;
    let name = match index_on(schema, column.name) {
        Some(index) => index.name.to_owned(),
        None => format!("{}_{}_ttl", schema.collection, column.name),
    };
    let options = IndexOptions::builder()
        .name(name.clone())
        .unique(index_on(schema, column.name).and_then(|x| x.unique.then_some(true)))
        .expire_after(Duration::from_secs(seconds))
        .build();
    let keys = doc! { crate::codec::key(schema, i): 1 };
    let model = IndexModel::builder().keys(keys).options(options).build();
    Some((model, name, i64::try_from(seconds).unwrap_or(i64::MAX)))
}

fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match &*err.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// One model per B-tree index of `schema` (but the TTL column's, which
/// [`ttl_index`] creates with its lifetime).
fn index_models(schema: &EntitySchema) -> Vec<IndexModel> {
    let ttl = schema.ttl_column().map(|(_, c, _)| c.name);
    schema
        .indexes
        .iter()
        .filter(|index| index.method == IndexMethod::BTree)
        .filter(|index| ttl.is_none_or(|t| index.columns != [t]))
        .map(|index| {
            let mut keys = Document::new();
            for name in index.columns {
                let is_id = *name == schema.id_column().name;
                keys.insert(if is_id { "_id" } else { *name }, 1);
            }
            let options = IndexOptions::builder()
                .name(index.name.to_owned())
                .unique(index.unique.then_some(true))
                .build();
            IndexModel::builder().keys(keys).options(options).build()
        })
        .collect()
}
