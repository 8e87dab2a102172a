//! [`MongoRepository`]: [`Repository`] for MongoDB, one collection per
//! entity (named by `E::SCHEMA.collection`: `#[repo(collection = "..")]`, else
//! the table name), the id stored as `_id`.
//!
//! Single-document writes are single commands (`insert`, `findAndModify`),
//! so each is atomic without a transaction. Every command runs under the
//! backend's operation deadline; a miss is [`Error::Timeout`].
//!
//! A repository taken from a [`MongoUnitOfWork`](crate::MongoUnitOfWork)
//! runs the same commands in the unit's session (see the `executor`
//! module). Every whole document written is checked against the server's
//! size limit before it is sent (see the `size` module).

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::sync::Arc;

use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::options::ReturnDocument;
use mongodb::{ClientSession, Collection};
use reposmith_core::stamp::{SoftDeleteStamp, not_soft_deleting, purge_cutoff, soft_delete_stamp};
use reposmith_core::{
    Backend, Embedder, Entity, EntitySchema, Error, FieldType, Filter, FindQuery, IdStrategy,
    MongoEntity, Page, PatchQuery, Repository, Result, RowScope, UpdateQuery, Updated, Value,
};

use reposmith_core::embed::{Fills, fill_row, missing_vectors};
use reposmith_core::keyset;

use crate::MongoBackend;
use crate::codec::{decode, decode_raw, encode, to_bson, to_millis};
use crate::error::{conflict, duplicate_key};
use crate::executor::{Executor, InSession};
use crate::render::filter_doc;
use crate::unit::UnitShared;
use crate::write::{id_text, stamp_new, stamp_update, update_doc, version_number};
use crate::{bulk, counter, query, size};

/// The repository of entity `E` on a MongoDB database. Cloning is cheap.
pub struct MongoRepository<E> {
    pub(crate) backend: MongoBackend,
    pub(crate) collection: Collection<Document>,
    pub(crate) exec: Executor,
    /// Fills `#[repo(embed(..))]` vectors; see [`MongoRepository::with_embedder`].
    pub(crate) embedder: Option<Arc<dyn Embedder>>,
    /// Whether reads may use the backend's cache; see
    /// [`MongoRepository::without_cache`].
    pub(crate) read_cache: bool,
    /// The implicit conditions of every read, update and delete (live
    /// documents only, unless [`Repository::with_deleted`]).
    pub(crate) scope: RowScope,
    entity: PhantomData<fn() -> E>,
}

impl<E> Clone for MongoRepository<E> {
    fn clone(&self) -> Self {
        MongoRepository {
            backend: self.backend.clone(),
            collection: self.collection.clone(),
            exec: self.exec.clone(),
            embedder: self.embedder.clone(),
            read_cache: self.read_cache,
            scope: self.scope.clone(),
            entity: PhantomData,
        }
    }
}

impl<E> std::fmt::Debug for MongoRepository<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoRepository")
            .field("collection", &self.collection.name())
            .field("in_unit", &self.exec.in_unit())
            .field("read_cache", &self.read_cache)
            .finish()
    }
}

impl MongoBackend {
    /// The repository of `E` on this backend's database.
    pub fn repo<E: MongoEntity>(&self) -> MongoRepository<E> {
        self.repo_of()
    }

    /// [`repo`](Self::repo) for code already holding proof that MongoDB
    /// stores `E` in another form (`E: StoredIn<Mongo>`).
    pub(crate) fn repo_of<E: Entity>(&self) -> MongoRepository<E> {
        MongoRepository {
            backend: self.clone(),
            collection: self.database().collection(E::SCHEMA.collection),
            exec: Executor::Client,
            embedder: self.embedder_for::<E>(),
            read_cache: true,
            scope: RowScope::of_tenant(E::SCHEMA, self.tenant.as_ref()),
            entity: PhantomData,
        }
    }
}

impl<E: Entity> MongoRepository<E> {
    /// This repository with `embedder` filling missing embeddings (`None` or
    /// empty vectors of `#[repo(embed(from = ".."))]` fields) on insert,
    /// `insert_many`, upsert and update, and serving
    /// `search_<field>_by_text`. The model is called before any command is
    /// sent; a present vector is never recomputed. See
    /// [`MongoBackend::set_embedder`] to give every repository of `E` one.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// This repository without an embedder: documents are written as given
    /// and a missing embedding stays missing (for code that embeds later).
    pub fn without_embedder(mut self) -> Self {
        self.embedder = None;
        self
    }

    /// The embeddings missing from `rows` (values in schema order), computed
    /// by this repository's embedder before any command is sent; nothing
    /// without an embedder. See [`reposmith_core::embed::missing_vectors`].
    pub(crate) async fn missing_embeddings(&self, rows: &[Vec<Value>]) -> Result<Fills> {
        missing_vectors(E::SCHEMA, self.embedder.as_deref(), rows).await
    }

    /// The repository of `E` in the transaction of a unit of work.
    pub(crate) fn on_unit(unit: Arc<UnitShared>) -> Self {
        let backend = unit.backend().clone();
        let scope = RowScope::of_tenant(E::SCHEMA, backend.tenant.as_ref());
        MongoRepository {
            collection: backend.database().collection(E::SCHEMA.collection),
            embedder: backend.embedder_for::<E>(),
            backend,
            scope,
            exec: Executor::Unit(unit),
            read_cache: true,
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

    /// `filter` restricted to this repository's row scope: what every
    /// filtered command (find, pages, count, exists, delete_where,
    /// searches) renders.
    /// A refused scope (a tenant-scoped entity without a tenant) is its
    /// typed error.
    pub(crate) fn scoped(&self, filter: Filter<E>) -> Result<Filter<E>> {
        self.scope.check()?;
        Ok(self.scope.apply(filter))
    }

    /// `entities` with the scope's tenant stamped (see
    /// [`RowScope::stamp`]), for the bulk paths; `None` when the scope
    /// stamps nothing (no copy is made).
    pub(crate) fn stamped_entities(&self, entities: &[E]) -> Result<Option<Vec<E>>> {
        self.scope.stamp_entities(entities)
    }

    /// `matcher` (a document's `_id` condition) within `scope`: the one
    /// rendering of the row scope for commands by id.
    /// A refused scope is its typed error.
    pub(crate) fn within(&self, matcher: Document, scope: &RowScope) -> Result<Document> {
        scope.check()?;
        if scope.is_empty() {
            return Ok(matcher);
        }
        let scope = filter_doc(E::SCHEMA, &scope.node())?;
        Ok(doc! { "$and": [matcher, scope] })
    }

    /// The `_id` condition of `id` within this repository's scope.
    fn by_id(&self, id: Bson) -> Result<Document> {
        self.within(doc! { "_id": { "$eq": id } }, &self.scope)
    }

    /// Runs one driver command, built by `command` for the session it is
    /// given: the unit's when this repository belongs to one (the unit is
    /// poisoned if the command fails or is dropped mid-flight), else none.
    /// Under the operation deadline; the error is mapped.
    pub(crate) async fn send<T>(
        &self,
        operation: &'static str,
        command: impl AsyncFnOnce(Option<&mut ClientSession>) -> mongodb::error::Result<T>,
    ) -> Result<T> {
        let outcome = match &self.exec {
            Executor::Client => self.run_raw(operation, command(None)).await,
            Executor::Unit(unit) => {
                let mut held = unit.hold().await?;
                let outcome = self.run_raw(operation, command(Some(held.session()))).await;
                held.settle(&outcome);
                outcome
            }
        };
        outcome?.map_err(|e| self.map_error(e))
    }

    /// Runs one driver command outside any unit of work, under the
    /// operation deadline, and maps its error.
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
        // One `reposmith.query` span per driver command, as the PostgreSQL
        // repository has one per statement: what tracing (and the relation
        // loaders' one-query-per-relation test) counts.
        let span = tracing::info_span!(
            "reposmith.query",
            db.system = "mongodb",
            db.operation = operation,
            db.collection = E::SCHEMA.collection,
        );
        tracing::Instrument::instrument(self.backend.bounded(operation, command), span).await
    }

    /// Refuses `doc`, a whole document, when it exceeds the server's size limit.
    pub(crate) fn check_size(&self, doc: &Document) -> Result<()> {
        let limit = self.backend.capabilities().max_bson_object_size;
        size::check(self.schema(), doc, limit)
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
        self.scope.stamp(schema, &mut values)?;
        fill_row(schema, self.embedder.as_deref(), &mut values).await?;
        reposmith_core::vector::check_row(schema, &values)?;
        stamp_new(schema, &mut values, self.backend.clock());
        let mut doc = encode(schema, &values)?;
        // Checked before an identity id is reserved: an integer id has the
        // same size whatever its value.
        self.check_size(&doc)?;
        if schema.id_strategy == IdStrategy::Identity {
            let first = counter::reserve(self, 1).await?;
            doc.insert("_id", counter::id_bson(schema, first));
        }
        self.send("insert", async |s| {
            self.collection.insert_one(&doc).in_session(s).await
        })
        .await?;
        // Decoded from what was sent, so timestamps carry BSON's precision.
        self.entity(&doc)
    }

    async fn update_one(&self, entity: &E) -> Result<E> {
        let schema = self.schema();
        let mut values = entity.to_values()?;
        self.scope.stamp(schema, &mut values)?;
        fill_row(schema, self.embedder.as_deref(), &mut values).await?;
        reposmith_core::vector::check_row(schema, &values)?;
        stamp_update(schema, &mut values, self.backend.clock());
        self.check_size(&encode(schema, &values)?)?;
        let id = to_bson(schema.entity, schema.id_column().field, &values[schema.id])?;
        let mut filter = doc! { "_id": { "$eq": id.clone() } };
        if let Some((i, column)) = schema.version_column() {
            let version = to_bson(schema.entity, column.field, &values[i])?;
            filter.insert(column.name, doc! { "$eq": version });
        }
        let filter = self.within(filter, &self.scope)?;
        let update = update_doc(schema, &values, false)?;
        let stored = self
            .send("update", async |s| {
                let command = self.collection.find_one_and_update(filter, update);
                let command = command.return_document(ReturnDocument::After);
                command.in_session(s).await
            })
            .await?;
        match stored {
            Some(stored) => self.entity(&stored),
            None => Err(self.update_miss(id, &values).await?),
        }
    }

    /// Why an update matched nothing: the document is gone, or (versioned)
    /// someone wrote first.
    async fn update_miss(&self, id: Bson, values: &[Value]) -> Result<Error> {
        let schema = self.schema();
        let filter = self.by_id(id.clone())?;
        let exists = self
            .send("update", async |s| {
                let command = self.collection.find_one(filter);
                command.projection(doc! { "_id": 1 }).in_session(s).await
            })
            .await?
            .is_some();
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
        self.scope.stamp(schema, &mut values)?;
        fill_row(schema, self.embedder.as_deref(), &mut values).await?;
        reposmith_core::vector::check_row(schema, &values)?;
        let read_updated_at = values.clone();
        stamp_new(schema, &mut values, self.backend.clock());
        if let Some((i, _)) = schema.column_with_role(reposmith_core::ColumnRole::UpdatedAt) {
            let mut caller = read_updated_at;
            stamp_update(schema, &mut caller, self.backend.clock());
            values[i] = caller[i].clone();
        }
        self.check_size(&encode(schema, &values)?)?;
        let id = to_bson(schema.entity, schema.id_column().field, &values[schema.id])?;
        let update = update_doc(schema, &values, true)?;
        // In a unit of work the failed attempt has aborted the transaction.
        let attempts = if self.exec.in_unit() {
            1
        } else {
            UPSERT_ATTEMPTS
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Within the tenant, deleted or not: another tenant's document
            // with this id is never overwritten (the insert half then
            // conflicts on `_id`).
            let filter = self.within(
                doc! { "_id": { "$eq": id.clone() } },
                &self.scope.clone().with_deleted(),
            )?;
            let upserted = self
                .send("upsert", async |s| {
                    let command = self.collection.find_one_and_update(filter, update.clone());
                    let command = command.upsert(true).return_document(ReturnDocument::After);
                    command.in_session(s).await
                })
                .await;
            match upserted {
                Ok(Some(stored)) => return self.entity(&stored),
                // MongoDB always returns the document here; SecantusDB sometimes
                // returns none under concurrent upserts of one id, after writing it.
                Ok(None) => return self.reread(id).await,
                // Two upserts of a new id can both try to insert; the loser retries as an update.
                Err(Error::Conflict { field, .. })
                    if field == Some(schema.id_column().field) && attempt < attempts => {}
                Err(other) => return Err(other),
            }
        }
    }

    /// The stored document with `id`, for a write whose reply lacked it.
    async fn reread(&self, id: Bson) -> Result<E> {
        let filter = doc! { "_id": { "$eq": id } };
        let found = self
            .send("find", async |s| {
                self.collection.find_one(filter).in_session(s).await
            })
            .await?;
        match found {
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
        let docs = query::find_all(
            self,
            self.within(doc! { "_id": { "$in": ids } }, &self.scope)?,
        )
        .await?;
        docs.iter().map(|d| self.entity(d)).collect()
    }
}

impl<E: Entity> Repository<E> for MongoRepository<E> {
    /// Invalidates the new row's entry in the cache (a cached "absent"
    /// included) and the entity's cached queries; see the `cache` module.
    async fn insert(&self, entity: &E) -> Result<E> {
        let given = [entity.id().to_value()];
        let ids = |stored: &E| vec![stored.id().to_value()];
        self.invalidating(ids, &given, self.insert_one(entity))
            .await
    }

    /// All or nothing: inside a transaction when the deployment has them,
    /// else the inserted documents are deleted again after a failure.
    async fn insert_many(&self, entities: &[E]) -> Result<u64> {
        let stamped = self.stamped_entities(entities)?;
        bulk::insert_many(self, stamped.as_deref().unwrap_or(entities)).await
    }

    /// Through the cache on a pool repository of a cached entity (see the
    /// `cache` module), else from the database.
    async fn get(&self, id: &E::Id) -> Result<Option<E>> {
        self.scope.check()?;
        match self.read_cache() {
            Some(cache) => cache.row::<E, _, _>(id, || self.get_one(id)).await,
            None => self.get_one(id).await,
        }
    }

    /// Through the cache on a pool repository of a cached entity: hits from
    /// it, every miss in one database read.
    async fn get_many(&self, ids: &[E::Id]) -> Result<Vec<E>> {
        self.scope.check()?;
        match self.read_cache() {
            Some(cache) => {
                let load = |missing: Vec<E::Id>| async move { self.get_many_ids(&missing).await };
                cache.rows::<E, _, _>(ids, load).await
            }
            None => self.get_many_ids(ids).await,
        }
    }

    async fn update(&self, entity: &E) -> Result<E> {
        let id = [entity.id().to_value()];
        let ids = |stored: &E| vec![stored.id().to_value()];
        self.invalidating(ids, &id, self.update_one(entity)).await
    }

    async fn upsert(&self, entity: &E) -> Result<E> {
        let id = [entity.id().to_value()];
        let ids = |stored: &E| vec![stored.id().to_value()];
        self.invalidating(ids, &id, self.upsert_one(entity)).await
    }

    async fn delete(&self, id: &E::Id) -> Result<bool> {
        let ids = [id.to_value()];
        let delete = async {
            match soft_delete_stamp(E::SCHEMA) {
                Some(stamp) => self.stamp_one(id, stamp, true).await,
                None => self.delete_one(id, &self.scope).await,
            }
        };
        self.invalidating(|_| ids.to_vec(), &ids, delete).await
    }

    /// On a cached entity with a cache attached, reads the matching ids
    /// first and deletes those documents that still match, so exactly the
    /// deleted rows are invalidated (see the `cache` module).
    async fn delete_where(&self, filter: Filter<E>) -> Result<u64> {
        match soft_delete_stamp(E::SCHEMA) {
            // A soft delete targets live documents whatever the view.
            Some(stamp) => {
                self.scope.check()?;
                let filter = self.scope.clone().live(E::SCHEMA).apply(filter);
                query::delete_where(self, filter, Some(stamp)).await
            }
            None => query::delete_where(self, self.scoped(filter)?, None).await,
        }
    }

    async fn restore(&self, id: &E::Id) -> Result<bool> {
        let Some(stamp) = soft_delete_stamp(E::SCHEMA) else {
            return Err(not_soft_deleting(E::SCHEMA.entity, "restore"));
        };
        let ids = [id.to_value()];
        let restore = self.stamp_one(id, stamp, false);
        self.invalidating(|_| ids.to_vec(), &ids, restore).await
    }

    async fn purge_deleted(&self, older_than: std::time::Duration) -> Result<u64> {
        let schema = E::SCHEMA;
        let Some((index, _)) = schema.soft_delete_column() else {
            return Err(not_soft_deleting(schema.entity, "purge_deleted"));
        };
        let cutoff = purge_cutoff(
            schema.entity,
            to_millis(self.backend.clock().now()),
            older_than,
        )?;
        let deleted = reposmith_core::Column::<E, Option<chrono::DateTime<chrono::Utc>>>::at(index);
        self.scope.check()?;
        let filter = self.scope.clone().with_deleted().apply(deleted.lt(cutoff));
        query::delete_where(self, filter, None).await
    }

    async fn purge(&self, id: &E::Id) -> Result<bool> {
        let ids = [id.to_value()];
        let scope = self.scope.clone().with_deleted();
        let purge = self.delete_one(id, &scope);
        self.invalidating(|_| ids.to_vec(), &ids, purge).await
    }

    fn with_deleted(&self) -> Self {
        let mut view = self.clone();
        view.scope = view.scope.with_deleted();
        view
    }

    /// One `findAndModify` (see the `patch` module); invalidates the row
    /// like `update`.
    async fn patch_one(&self, query: PatchQuery<E>) -> Result<E> {
        let id = [query.id.to_value()];
        let ids = |stored: &E| vec![stored.id().to_value()];
        let write = async {
            let prepared = crate::patch::prepare(self, query.changes).await?;
            crate::patch::patch(self, &query.id, prepared, query.expected_version).await
        };
        self.invalidating(ids, &id, write).await
    }

    /// One `update` command, or one `findAndModify` per matching document
    /// when the rows are asked for or a cache must drop exactly the updated
    /// rows (see the `patch` module).
    async fn update_matching(&self, query: UpdateQuery<E>) -> Result<Updated<E>> {
        let prepared = crate::patch::prepare(self, query.changes).await?;
        let (count, rows) =
            crate::patch::update_where(self, query.filter, prepared, query.returning).await?;
        Ok(Updated::new(count, rows))
    }

    /// Through the cache when the query is `.cached(..)` (see the `cache`
    /// module).
    async fn fetch(&self, mut query: FindQuery<E>) -> Result<Vec<E>> {
        query.filter = self.scoped(query.filter)?;
        let limit = query.limit;
        let rows = query::fetch(self, query, limit).await?;
        rows.into_iter().map(E::from_values).collect()
    }

    /// One page of `size` documents and the cursor of the next page, `None`
    /// when this page is the last; see the `keyset` module for the order.
    /// Through the cache when the query is `.cached(..)`.
    async fn fetch_page(&self, mut query: FindQuery<E>, size: u64) -> Result<Page<E>> {
        query.filter = self.scoped(query.filter)?;
        keyset::fetch_page(query, size, |query, limit| {
            query::fetch(self, query, Some(limit))
        })
        .await
    }

    async fn count(&self, filter: Filter<E>) -> Result<u64> {
        query::count(self, self.scoped(filter)?).await
    }

    async fn exists(&self, filter: Filter<E>) -> Result<bool> {
        query::exists(self, self.scoped(filter)?).await
    }
}

impl<E: Entity> MongoRepository<E> {
    /// The document with `id`, from the database.
    async fn get_one(&self, id: &E::Id) -> Result<Option<E>> {
        let filter = self.by_id(self.id_bson(id)?)?;
        // Read as raw BSON and decoded straight into values, as queries are.
        let raw = self.collection.clone_with_type::<RawDocumentBuf>();
        let found = self
            .send("find", async |s| raw.find_one(filter).in_session(s).await)
            .await?;
        found
            .map(|doc| E::from_values(decode_raw(E::SCHEMA, doc.as_ref())?))
            .transpose()
    }

    /// Soft-deletes (`deleting`) or restores the document with `id`: the
    /// soft-delete key set to now (or `null`), `updated_at` stamped, the
    /// version incremented; a delete matches a live document only, a
    /// restore a deleted one, both within the rest of the scope.
    async fn stamp_one(&self, id: &E::Id, stamp: SoftDeleteStamp, deleting: bool) -> Result<bool> {
        let schema = E::SCHEMA;
        let key = |i| crate::codec::key(schema, i);
        let now = Bson::DateTime(mongodb::bson::DateTime::from_millis(
            self.backend.clock().now().timestamp_millis(),
        ));
        // `null` or a missing key is live, as in the row scope's rendering
        // (`{k: {$eq: null}}`): a document written before the entity gained
        // soft delete has no key, reads as live, and must be deletable by id
        // (`$type: "null"` fails on a missing key) and never "restored".
        let state = if deleting {
            doc! { key(stamp.column): { "$eq": Bson::Null } }
        } else {
            doc! { key(stamp.column): { "$ne": Bson::Null } }
        };
        let matcher = doc! { "$and": [{ "_id": { "$eq": self.id_bson(id)? } }, state] };
        let filter = self.within(matcher, &self.scope.clone().with_deleted())?;
        let mut set = doc! { key(stamp.column): if deleting { now.clone() } else { Bson::Null } };
        if let Some(i) = stamp.updated_at {
            set.insert(key(i), now);
        }
        let mut update = doc! { "$set": set };
        if let Some(i) = stamp.version {
            update.insert("$inc", doc! { key(i): 1_i64 });
        }
        let done = self
            .send("update", async |s| {
                self.collection
                    .update_one(filter, update)
                    .in_session(s)
                    .await
            })
            .await?;
        Ok(done.matched_count > 0)
    }

    /// Deletes the document with `id` within `scope`; false when there was none.
    async fn delete_one(&self, id: &E::Id, scope: &RowScope) -> Result<bool> {
        let filter = self.within(doc! { "_id": { "$eq": self.id_bson(id)? } }, scope)?;
        let done = self
            .send("delete", async |s| {
                self.collection.delete_one(filter).in_session(s).await
            })
            .await?;
        Ok(done.deleted_count > 0)
    }
}
