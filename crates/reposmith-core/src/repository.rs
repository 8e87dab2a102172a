//! [`Repository`]: the operations every backend offers for an entity, and the
//! query types they take.
//!
//! Domain code is written against this trait, not a database: the Postgres
//! and MongoDB repositories implement it and run the same conformance suite.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use crate::Result;
use crate::changes::Changes;
use crate::cursor::Cursor;
use crate::entity::Entity;
use crate::filter::{Filter, Order};

/// A boxed future, as returned by the query builders' `IntoFuture`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to fetch: a filter, an ordering, a limit and a keyset position.
#[derive(Debug)]
#[non_exhaustive]
pub struct FindQuery<E> {
    /// Rows to match.
    pub filter: Filter<E>,
    /// Sort keys, applied in order; the id is always appended as the last key
    /// so the order is total and pages are stable.
    pub order: Vec<Order<E>>,
    /// Most rows to return.
    pub limit: Option<u64>,
    /// Start after this position (keyset pagination).
    pub after: Option<Cursor>,
    /// Cache the result for this long ([`Find::cached`]).
    pub cached: Option<std::time::Duration>,
}

impl<E: Entity> FindQuery<E> {
    /// Every row matching `filter`, in id order.
    pub fn new(filter: Filter<E>) -> Self {
        FindQuery {
            filter,
            order: Vec::new(),
            limit: None,
            after: None,
            cached: None,
        }
    }
}

impl<E> Clone for FindQuery<E> {
    fn clone(&self) -> Self {
        FindQuery {
            filter: self.filter.clone(),
            order: self.order.clone(),
            limit: self.limit,
            after: self.after.clone(),
            cached: self.cached,
        }
    }
}

/// One page of a keyset-paginated query.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Page<E> {
    /// The rows of this page, in query order.
    pub items: Vec<E>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<Cursor>,
}

impl<E> Page<E> {
    /// A page of `items`, followed by the page at `next` if any.
    pub fn new(items: Vec<E>, next: Option<Cursor>) -> Self {
        Page { items, next }
    }
}

/// Async persistence of one entity type.
///
/// Every method validates its input before anything is sent and returns a
/// classified [`Error`](crate::Error).
pub trait Repository<E: Entity>: Send + Sync {
    /// Stores a new entity and returns it as stored: generated id, version 1,
    /// timestamps set. A unique violation is [`Error::Conflict`](crate::Error::Conflict).
    fn insert(&self, entity: &E) -> impl Future<Output = Result<E>> + Send;

    /// Stores many entities in as few round trips as the backend allows;
    /// all or nothing. Returns how many were stored.
    fn insert_many(&self, entities: &[E]) -> impl Future<Output = Result<u64>> + Send;

    /// The entity with `id`, if any.
    fn get(&self, id: &E::Id) -> impl Future<Output = Result<Option<E>>> + Send;

    /// The entities with these ids, in no particular order; missing ids are skipped.
    fn get_many(&self, ids: &[E::Id]) -> impl Future<Output = Result<Vec<E>>> + Send;

    /// Writes every field of an existing entity. On a versioned entity the
    /// stored version must equal the entity's, else [`Error::StaleVersion`](crate::Error::StaleVersion);
    /// the returned entity carries the bumped version. A missing row is
    /// [`Error::NotFound`](crate::Error::NotFound).
    fn update(&self, entity: &E) -> impl Future<Output = Result<E>> + Send;

    /// Inserts, or on an id conflict overwrites, in one statement. Last
    /// writer wins: on a versioned entity the stored version is bumped, not
    /// checked; use [`Repository::update`] for optimistic locking.
    fn upsert(&self, entity: &E) -> impl Future<Output = Result<E>> + Send;

    /// Deletes the entity with `id`; false when there was none.
    ///
    /// On an entity with `#[repo(soft_delete)]` the row stays: its
    /// soft-delete column is set to now (and `updated_at` stamped, the
    /// version bumped, when the entity has them), and every read skips it
    /// from then on. Deleting a row already deleted returns false.
    fn delete(&self, id: &E::Id) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes every row matching `filter`; returns how many. Soft-deletes
    /// on an entity with `#[repo(soft_delete)]`, as [`Repository::delete`]
    /// does; rows already deleted are not counted.
    fn delete_where(&self, filter: Filter<E>) -> impl Future<Output = Result<u64>> + Send;

    /// Brings back the soft-deleted row with `id` (its soft-delete column
    /// cleared, `updated_at` stamped and the version bumped when the entity
    /// has them); false when no deleted row has that id. An entity without
    /// `#[repo(soft_delete)]` is [`Error::InvalidInput`](crate::Error::InvalidInput).
    fn restore(&self, id: &E::Id) -> impl Future<Output = Result<bool>> + Send;

    /// Removes for good the rows soft-deleted more than `older_than` ago;
    /// returns how many. An entity without `#[repo(soft_delete)]` is
    /// [`Error::InvalidInput`](crate::Error::InvalidInput).
    fn purge_deleted(
        &self,
        older_than: std::time::Duration,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Removes the row with `id` for good, deleted or not (on an entity
    /// without soft delete, the same as [`Repository::delete`]); false when
    /// there was none.
    fn purge(&self, id: &E::Id) -> impl Future<Output = Result<bool>> + Send;

    /// This repository, also seeing soft-deleted rows: every read, update
    /// and `restore`/`purge` through it matches deleted rows too (a
    /// `delete` through it still only deletes live rows). Its reads never
    /// use the repository cache. On an entity without soft delete, the same
    /// repository.
    fn with_deleted(&self) -> Self
    where
        Self: Sized;

    /// Runs a query built with [`Repository::find`].
    fn fetch(&self, query: FindQuery<E>) -> impl Future<Output = Result<Vec<E>>> + Send;

    /// Runs a query and returns one page of `size` rows with the cursor of the next.
    fn fetch_page(
        &self,
        query: FindQuery<E>,
        size: u64,
    ) -> impl Future<Output = Result<Page<E>>> + Send;

    /// How many rows match `filter`.
    fn count(&self, filter: Filter<E>) -> impl Future<Output = Result<u64>> + Send;

    /// Whether any row matches `filter`.
    fn exists(&self, filter: Filter<E>) -> impl Future<Output = Result<bool>> + Send;

    /// Every row of `query` as a stream, fetched [`STREAM_BATCH`](crate::stream::STREAM_BATCH)
    /// rows per round trip with keyset pagination, so no connection is held
    /// between batches. Rows inserted meanwhile appear if they sort after the
    /// stream's position. An error is yielded once and ends the stream.
    fn stream(&self, query: FindQuery<E>) -> crate::stream::EntityStream<'_, E>
    where
        Self: Sized,
    {
        crate::stream::paged(self, query)
    }

    /// Runs a partial update built with [`Repository::patch`].
    fn patch_one(&self, query: PatchQuery<E>) -> impl Future<Output = Result<E>> + Send;

    /// Runs an update built with [`Repository::update_where`].
    fn update_matching(
        &self,
        query: UpdateQuery<E>,
    ) -> impl Future<Output = Result<Updated<E>>> + Send;

    /// Applies `changes` to the row with `id` in one atomic statement and
    /// returns the row as stored: `repo.patch(&id, Doc::VIEWS.add(1)).await`.
    ///
    /// `updated_at` is stamped; on a versioned entity the version is bumped,
    /// and `.if_version(v)` makes the write conditional on the stored
    /// version being `v` ([`Error::StaleVersion`](crate::Error::StaleVersion)
    /// otherwise, nothing written). A missing row is
    /// [`Error::NotFound`](crate::Error::NotFound). The changes are checked
    /// first ([`Changes::validate`]); a changed embed source re-embeds
    /// ([`embed_changes`](crate::changes::embed_changes)).
    fn patch(&self, id: &E::Id, changes: impl Into<Changes<E>>) -> Patch<'_, E, Self>
    where
        Self: Sized,
    {
        Patch {
            repo: self,
            query: PatchQuery {
                id: id.clone(),
                changes: changes.into(),
                expected_version: None,
            },
        }
    }

    /// Applies `changes` to every row matching `filter` in one statement
    /// (`updated_at` stamped, versions bumped); `.await` it for how many,
    /// or `.returning()` for the updated rows.
    fn update_where(
        &self,
        filter: Filter<E>,
        changes: impl Into<Changes<E>>,
    ) -> UpdateWhere<'_, E, Self>
    where
        Self: Sized,
    {
        UpdateWhere {
            repo: self,
            query: UpdateQuery {
                filter,
                changes: changes.into(),
                returning: false,
            },
        }
    }

    /// Starts a query: `repo.find(filter).order_by(col.desc()).limit(20).await`.
    fn find(&self, filter: Filter<E>) -> Find<'_, E, Self>
    where
        Self: Sized,
    {
        Find {
            repo: self,
            query: FindQuery::new(filter),
        }
    }
}

/// A query under construction; `.await` it for the rows.
#[must_use = "a query does nothing until it is awaited"]
pub struct Find<'r, E, R> {
    repo: &'r R,
    query: FindQuery<E>,
}

impl<'r, E: Entity, R: Repository<E>> Find<'r, E, R> {
    /// Adds a sort key after the ones already given.
    pub fn order_by(mut self, order: Order<E>) -> Self {
        self.query.order.push(order);
        self
    }

    /// Returns at most `n` rows.
    pub fn limit(mut self, n: u64) -> Self {
        self.query.limit = Some(n);
        self
    }

    /// Caches the result for `ttl` in the repository cache, keyed by a hash
    /// of the rendered query and its parameters, and invalidated by any
    /// committed write to the entity (a per-entity generation). Needs
    /// `#[repo(cache(..))]` on the entity (else the query fails with
    /// [`Error::InvalidInput`](crate::Error::InvalidInput): its writes would
    /// not invalidate the result); without a configured cache, and inside a
    /// unit of work, the query simply runs. Each page of `page_after` (and
    /// of `stream`) is an entry of its own.
    pub fn cached(mut self, ttl: std::time::Duration) -> Self {
        self.query.cached = Some(ttl);
        self
    }

    /// One page of `size` rows after `cursor` (the first page when `None`).
    pub fn page_after(mut self, cursor: Option<Cursor>, size: u64) -> FindPage<'r, E, R> {
        self.query.after = cursor;
        FindPage {
            repo: self.repo,
            query: self.query,
            size,
        }
    }

    /// Every matching row as a stream, fetched in keyset pages; see [`Repository::stream`].
    pub fn stream(self) -> crate::stream::EntityStream<'r, E> {
        crate::stream::paged(self.repo, self.query)
    }

    /// The first matching row, if any.
    pub async fn one(self) -> Result<Option<E>> {
        let rows = self.limit(1).await?;
        Ok(rows.into_iter().next())
    }

    /// The query as data, for backends and tests.
    pub fn into_query(self) -> FindQuery<E> {
        self.query
    }
}

impl<'r, E: Entity, R: Repository<E>> IntoFuture for Find<'r, E, R> {
    type Output = Result<Vec<E>>;
    type IntoFuture = BoxFuture<'r, Result<Vec<E>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.repo.fetch(self.query))
    }
}

/// A paginated query; `.await` it for a [`Page`].
#[must_use = "a query does nothing until it is awaited"]
pub struct FindPage<'r, E, R> {
    repo: &'r R,
    query: FindQuery<E>,
    size: u64,
}

impl<'r, E: Entity, R: Repository<E>> IntoFuture for FindPage<'r, E, R> {
    type Output = Result<Page<E>>;
    type IntoFuture = BoxFuture<'r, Result<Page<E>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.repo.fetch_page(self.query, self.size))
    }
}

/// A partial update of one row, as data ([`Repository::patch`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct PatchQuery<E: Entity> {
    /// The row.
    pub id: E::Id,
    /// What to change.
    pub changes: Changes<E>,
    /// Write only if the stored version is this one (versioned entities).
    pub expected_version: Option<i64>,
}

/// An update of every row matching a filter, as data ([`Repository::update_where`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct UpdateQuery<E> {
    /// Rows to change.
    pub filter: Filter<E>,
    /// What to change.
    pub changes: Changes<E>,
    /// Return the updated rows, not only their number.
    pub returning: bool,
}

/// What [`Repository::update_matching`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Updated<E> {
    /// How many rows were updated.
    pub count: u64,
    /// The updated rows as stored, when the query asked for them (in no
    /// particular order); empty otherwise.
    pub rows: Vec<E>,
}

impl<E> Updated<E> {
    /// `count` rows updated, `rows` of them returned.
    pub fn new(count: u64, rows: Vec<E>) -> Self {
        Updated { count, rows }
    }
}

/// A partial update under construction; `.await` it for the stored row.
#[must_use = "a patch does nothing until it is awaited"]
pub struct Patch<'r, E: Entity, R> {
    repo: &'r R,
    query: PatchQuery<E>,
}

impl<'r, E: Entity, R: Repository<E>> Patch<'r, E, R> {
    /// Writes only if the stored version is `version`; otherwise
    /// [`Error::StaleVersion`](crate::Error::StaleVersion) and nothing is
    /// written. On an entity without `#[repo(version)]` the patch is
    /// refused as [`Error::InvalidInput`](crate::Error::InvalidInput).
    pub fn if_version(mut self, version: i64) -> Self {
        self.query.expected_version = Some(version);
        self
    }

    /// The patch as data, for backends and tests.
    pub fn into_query(self) -> PatchQuery<E> {
        self.query
    }
}

impl<'r, E: Entity, R: Repository<E>> IntoFuture for Patch<'r, E, R> {
    type Output = Result<E>;
    type IntoFuture = BoxFuture<'r, Result<E>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.repo.patch_one(self.query))
    }
}

/// An update of the rows matching a filter; `.await` it for how many.
#[must_use = "an update does nothing until it is awaited"]
pub struct UpdateWhere<'r, E, R> {
    repo: &'r R,
    query: UpdateQuery<E>,
}

impl<'r, E: Entity, R: Repository<E>> UpdateWhere<'r, E, R> {
    /// Returns the updated rows as stored instead of their number.
    pub fn returning(mut self) -> UpdateWhereReturning<'r, E, R> {
        self.query.returning = true;
        UpdateWhereReturning { inner: self }
    }

    /// The update as data, for backends and tests.
    pub fn into_query(self) -> UpdateQuery<E> {
        self.query
    }
}

impl<'r, E: Entity, R: Repository<E>> IntoFuture for UpdateWhere<'r, E, R> {
    type Output = Result<u64>;
    type IntoFuture = BoxFuture<'r, Result<u64>>;

    fn into_future(self) -> Self::IntoFuture {
        let updated = self.repo.update_matching(self.query);
        Box::pin(async move { Ok(updated.await?.count) })
    }
}

/// An update returning the updated rows; `.await` it for them.
#[must_use = "an update does nothing until it is awaited"]
pub struct UpdateWhereReturning<'r, E, R> {
    inner: UpdateWhere<'r, E, R>,
}

impl<'r, E: Entity, R: Repository<E>> IntoFuture for UpdateWhereReturning<'r, E, R> {
    type Output = Result<Vec<E>>;
    type IntoFuture = BoxFuture<'r, Result<Vec<E>>>;

    fn into_future(self) -> Self::IntoFuture {
        let updated = self.inner.repo.update_matching(self.inner.query);
        Box::pin(async move { Ok(updated.await?.rows) })
    }
}
