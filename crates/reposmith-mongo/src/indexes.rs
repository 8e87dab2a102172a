//! Collections and indexes created from the entity schema, until migrations
//! cover MongoDB.
//!
//! Which indexes, under which names, is decided in `index_spec` (shared
//! with migrations). Every B-tree [`IndexDef`](reposmith_core::IndexDef)
//! becomes a MongoDB index of the same name (so a conflict names the index the schema
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

use mongodb::IndexModel;
use mongodb::bson::{Document, doc};
use reposmith_core::{MongoEntity, Result};

use crate::MongoBackend;
use crate::index_spec::{MongoIndex, index_specs};

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
        let (ttl, plain): (Vec<MongoIndex>, Vec<MongoIndex>) = index_specs(schema)
            .into_iter()
            .partition(|index| index.expire_after_seconds.is_some());
        let models: Vec<IndexModel> = plain.iter().map(MongoIndex::model).collect();
        if !models.is_empty() {
            collection
                .create_indexes(models)
                .await
                .map_err(|e| self.map_error(e))?;
        }
        // At most one: an entity expires rows by one clock.
        for index in ttl {
            self.ensure_ttl_index(&collection, &index).await?;
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
        index: &MongoIndex,
    ) -> Result<()> {
        let model = index.model();
        let created = collection.create_index(model.clone()).await;
        // MongoDB reports the changed lifetime as 85; SecantusDB as 86.
        let code = created.as_ref().err().and_then(command_code);
        if !matches!(
            code,
            Some(INDEX_OPTIONS_CONFLICT | INDEX_KEY_SPECS_CONFLICT)
        ) {
            return created.map(drop).map_err(|e| self.map_error(e));
        }
        let seconds = index.expire_after_seconds.unwrap_or_default();
        let ttl = i64::try_from(seconds).unwrap_or(i64::MAX);
        let index = doc! { "name": index.name.as_str(), "expireAfterSeconds": ttl };
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

fn command_code(err: &mongodb::error::Error) -> Option<i32> {
    match &*err.kind {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}
