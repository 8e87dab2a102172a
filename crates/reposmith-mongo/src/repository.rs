//! [`MongoRepository`]: [`Repository`] for MongoDB, one collection per
//! entity (named by `E::SCHEMA.table`), the id stored as `_id`.
//!
//! Single-document writes are single commands (`insert`, `findAndModify`),
//! so each is atomic without a transaction. Every command runs under the
//! backend's operation deadline; a miss is [`Error::Timeout`].

use std::future::IntoFuture;
use std::marker::PhantomData;

use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use reposmith_core::{
    Backend, Entity, EntitySchema, Error, FieldType, Filter, FindQuery, IdStrategy, Page,
    Repository, Result, Value,
};

use crate::MongoBackend;
use crate::codec::{decode, encode, to_bson};
use crate::error::{conflict, duplicate_key};
use crate::write::{id_text, stamp_new, stamp_update, update_doc, version_number};
use crate::{bulk, counter, query};

/// The repository of entity `E` on a MongoDB database. Cloning is cheap.
pub struct MongoRepository<E> {
    pub(crate) backend: MongoBackend,
    pub(crate) collection: Collection<Document>,
    entity: PhantomData<fn() -> E>,
}

impl<E> Clone for MongoRepository<E> {
    fn clone(&self) -> Self {
        MongoRepository {
            backend: self.backend.clone(),
            collection: self.collection.clone(),
            entity: PhantomData,
        }
    }
}

impl<E> std::fmt::Debug for MongoRepository<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoRepository")
            .field("collection", &self.collection.name())
            .finish()
    }
}

impl MongoBackend {
    /// The repository of `E` on this backend's database.
    pub fn repo<E: Entity>(&self) -> MongoRepository<E> {
        MongoRepository {
            backend: self.clone(),
            collection: self.database().collection(E::SCHEMA.table),
            entity: PhantomData,
        }
    }
}

/// How many times an upsert that lost an insert race on `_id` is retried:
/// the retry finds the winner's document and updates it.
const UPSERT_ATTEMPTS: usize = 3;

impl<E: Entity> MongoRepository<E> {
    pub(crate) fn schema(&self) -> &'static EntitySchema {
        E::SCHEMA
    }

    /// Runs one driver command under the operation deadline and maps its error.
    pub(crate) async fn run<T>(
        &self,
        operation: &'static str,
        command: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T> {
        self.run_raw(operation, command)
            .await?
            .map_err(|e| self.map_error(e))
    }

    /// Runs one driver command under the operation deadline, leaving its
    /// error unmapped for callers that inspect it.
    pub(crate) async fn run_raw<T>(
        &self,
        operation: &'static str,
        command: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>> {
        let after = self.backend.operation_timeout();
        tokio::time::timeout(after, command.into_future())
            .await
            .map_err(|_| Error::Timeout {
                backend: Backend::Mongo,
                operation,
                after,
            })
    }

    /// A duplicate key is a conflict on this entity; anything else per the error contract.
    pub(crate) fn map_error(&self, err: mongodb::error::Error) -> Error {
        match duplicate_key(&err) {
            Some(message) => conflict(self.schema(), message),
            None => self.backend.map_error(err),
        }
    }

    fn id_bson(&self, id: &E::Id) -> Result<Bson> {
        let field = self.schema().id_column().field;
        to_bson(self.schema().entity, field, &id.to_value())
    }

    fn entity(&self, doc: &Document) -> Result<E> {
        E::from_values(decode(self.schema(), doc)?)
    }

    async fn insert_one(&self, entity: &E) -> Result<E> {
        let schema = self.schema();
        let mut values = entity.to_values()?;
        stamp_new(schema, &mut values);
        if schema.id_strategy == IdStrategy::Identity {
            let first = counter::reserve(self, 1).await?;
            values[schema.id] = Value::I64(first);
        }
        let doc = encode(schema, &values)?;
        self.run("insert", self.collection.insert_one(&doc)).await?;
        // Decoded from what was sent, so timestamps carry BSON's precision.
        self.entity(&doc)
    }

    async fn update_one(&self, entity: &E) -> Result<E> {
        let schema = self.schema();
        let mut values = entity.to_values()?;
        stamp_update(schema, &mut values);
        let id = to_bson(schema.entity, schema.id_column().field, &values[schema.id])?;
        let mut filter = doc! { "_id": { "$eq": id.clone() } };
        if let Some((i, column)) = schema.version_column() {
            let version = to_bson(schema.entity, column.field, &values[i])?;
            filter.insert(column.name, doc! { "$eq": version });
        }
        let update = update_doc(schema, &values, false)?;
        let command = self
            .collection
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After);
        match self.run("update", command).await? {
            Some(stored) => self.entity(&stored),
            None => Err(self.update_miss(id, &values).await?),
        }
    }

    /// Why an update matched nothing: the document is gone, or (versioned)
    /// someone wrote first.
    async fn update_miss(&self, id: Bson, values: &[Value]) -> Result<Error> {
        let schema = self.schema();
        let found = self
            .collection
            .find_one(doc! { "_id": { "$eq": id } })
            .projection(doc! { "_id": 1 });
        let exists = self.run("update", found).await?.is_some();
        let id = id_text(&values[schema.id]);
        Ok(match schema.version_column() {
            Some((i, _)) if exists => Error::StaleVersion {
                entity: schema.entity,
                id,
                expected: version_number(&values[i]),
            },
            _ => Error::NotFound {
                entity: schema.entity,
                id,
            },
        })
    }

    /// `findAndModify` with `upsert: true` on `_id`: fields set, version
    /// incremented (1 on insert), `created_at` set only on insert.
    async fn upsert_one(&self, entity: &E) -> Result<E> {
        let schema = self.schema();
        let mut values = entity.to_values()?;
        let read_updated_at = values.clone();
        stamp_new(schema, &mut values);
        if let Some((i, _)) = schema.column_with_role(reposmith_core::ColumnRole::UpdatedAt) {
            let mut caller = read_updated_at;
            stamp_update(schema, &mut caller);
            values[i] = caller[i].clone();
        }
        let id = to_bson(schema.entity, schema.id_column().field, &values[schema.id])?;
        let update = update_doc(schema, &values, true)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let command = self
                .collection
                .find_one_and_update(doc! { "_id": { "$eq": id.clone() } }, update.clone())
                .upsert(true)
                .return_document(ReturnDocument::After);
            match self.run("upsert", command).await {
                Ok(Some(stored)) => return self.entity(&stored),
                // MongoDB always returns the document here; SecantusDB sometimes
                // returns none under concurrent upserts of one id, after writing it.
                Ok(None) => return self.reread(id).await,
                // Two upserts of a new id can both try to insert; the loser retries as an update.
                Err(Error::Conflict { field, .. })
                    if field == Some(schema.id_column().field) && attempt < UPSERT_ATTEMPTS => {}
                Err(other) => return Err(other),
            }
        }
    }

    /// The stored document with `id`, for a write whose reply lacked it.
    async fn reread(&self, id: Bson) -> Result<E> {
        let found = self.collection.find_one(doc! { "_id": { "$eq": id } });
        match self.run("find", found).await? {
            Some(stored) => self.entity(&stored),
            None => Err(Error::Backend {
                backend: Backend::Mongo,
                code: None,
                reason: "upsert returned no document and none is stored".to_owned(),
            }),
        }
    }

    async fn get_many_ids(&self, ids: &[E::Id]) -> Result<Vec<E>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids
            .iter()
            .map(|id| self.id_bson(id))
            .collect::<Result<Vec<_>>>()?;
        let docs = query::find_all(self, doc! { "_id": { "$in": ids } }).await?;
        docs.iter().map(|d| self.entity(d)).collect()
    }
}

impl<E: Entity> Repository<E> for MongoRepository<E> {
    async fn insert(&self, entity: &E) -> Result<E> {
        self.insert_one(entity).await
    }

    /// All or nothing: inside a transaction when the deployment has them,
    /// else the inserted documents are deleted again after a failure.
    async fn insert_many(&self, entities: &[E]) -> Result<u64> {
        bulk::insert_many(self, entities).await
    }

    async fn get(&self, id: &E::Id) -> Result<Option<E>> {
        let filter = doc! { "_id": { "$eq": self.id_bson(id)? } };
        let found = self.run("find", self.collection.find_one(filter)).await?;
        found.map(|doc| self.entity(&doc)).transpose()
    }

    async fn get_many(&self, ids: &[E::Id]) -> Result<Vec<E>> {
        self.get_many_ids(ids).await
    }

    async fn update(&self, entity: &E) -> Result<E> {
        self.update_one(entity).await
    }

    async fn upsert(&self, entity: &E) -> Result<E> {
        self.upsert_one(entity).await
    }

    async fn delete(&self, id: &E::Id) -> Result<bool> {
        let filter = doc! { "_id": { "$eq": self.id_bson(id)? } };
        let done = self
            .run("delete", self.collection.delete_one(filter))
            .await?;
        Ok(done.deleted_count > 0)
    }

    async fn delete_where(&self, filter: Filter<E>) -> Result<u64> {
        query::delete_where(self, filter).await
    }

    async fn fetch(&self, query: FindQuery<E>) -> Result<Vec<E>> {
        let limit = query.limit;
        let rows = query::fetch(self, query, limit).await?;
        rows.into_iter().map(E::from_values).collect()
    }

    /// One page of `size` documents and the cursor of the next page, `None`
    /// when this page is the last; see the `keyset` module for the order.
    async fn fetch_page(&self, query: FindQuery<E>, size: u64) -> Result<Page<E>> {
        let (items, next) = query::fetch_page(self, query, size).await?;
        Ok(Page::new(items, next))
    }

    async fn count(&self, filter: Filter<E>) -> Result<u64> {
        query::count(self, filter).await
    }

    async fn exists(&self, filter: Filter<E>) -> Result<bool> {
        query::exists(self, filter).await
    }
}
