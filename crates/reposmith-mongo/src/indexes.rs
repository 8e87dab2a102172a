//! Collections and indexes created from the entity schema, until migrations
//! cover MongoDB.
//!
//! Every B-tree [`IndexDef`](reposmith_core::IndexDef) becomes a MongoDB
//! index of the same name (so a conflict names the index the schema
//! declares, e.g. `docs_title_key`), unique where the schema says so. GIN
//! indexes (JSON containment on Postgres) have no MongoDB counterpart that
//! serves arbitrary paths, so they are skipped: path filters run unindexed
//! until a wildcard index is chosen deliberately.

use mongodb::IndexModel;
use mongodb::bson::Document;
use mongodb::options::IndexOptions;
use reposmith_core::{Entity, EntitySchema, IndexMethod, Result};

use crate::MongoBackend;

/// MongoDB's "collection already exists" code.
const NAMESPACE_EXISTS: i32 = 48;

impl MongoBackend {
    /// Creates `E`'s collection if it is missing, then its indexes.
    ///
    /// Explicit creation matters inside transactions: servers before 4.4
    /// cannot create a collection implicitly there.
    pub async fn create_collections<E: Entity>(&self) -> Result<()> {
        let created = self.database().create_collection(E::SCHEMA.table).await;
        match created {
            Err(e) if command_code(&e) == Some(NAMESPACE_EXISTS) => {}
            other => other.map_err(|e| self.map_error(e))?,
        }
        self.ensure_indexes::<E>().await
    }

    /// Creates the schema's indexes on `E`'s collection; existing ones with
    /// the same definition are left as they are.
    pub async fn ensure_indexes<E: Entity>(&self) -> Result<()> {
        let models = index_models(E::SCHEMA);
        if models.is_empty() {
            return Ok(());
        }
        let collection = self.database().collection::<Document>(E::SCHEMA.table);
        collection
            .create_indexes(models)
            .await
            .map_err(|e| self.map_error(e))?;
        Ok(())
    }
}

fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match &*err.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// One model per B-tree index of `schema`.
fn index_models(schema: &EntitySchema) -> Vec<IndexModel> {
    schema
        .indexes
        .iter()
        .filter(|index| index.method == IndexMethod::BTree)
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
