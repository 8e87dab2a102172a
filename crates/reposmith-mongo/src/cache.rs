//! The repository cache on MongoDB: which reads go through the
//! [`Cache`] attached with [`MongoBackend::with_cache`](crate::MongoBackend::with_cache),
//! and how writes invalidate it.
//!
//! # Reads
//!
//! Only entities declaring `#[repo(cache(..))]` are cached, and only
//! through a repository taken from the backend (the pool):
//!
//! * `get` and `get_many` read row entries ([`Cache::row`], [`Cache::rows`]),
//!   absent rows included when the entity has a `negative_ttl`;
//! * `fetch`, `fetch_page` (and so `stream`) and vector searches whose
//!   query carries `.cached(ttl)` read a query entry ([`Cache::query`]). Its
//!   key is a hash of the backend tag, the database and collection names
//!   and the rendered command as BSON bytes (filter, sort, limit, keyset
//!   position; for a search, the whole pipeline with the query vector), so
//!   no user value ever appears in a key. A search's rows keep their
//!   distance and score.
//!
//! `.cached(..)` on an entity without `#[repo(cache(..))]` fails with
//! [`Error::InvalidInput`] wherever it runs (its writes would never
//! invalidate the result). Without an attached cache, through a repository
//! made with [`MongoRepository::without_cache`], and in a unit of work the
//! query simply runs against the database. Reads in a unit of work never
//! touch the cache: the unit must see its own writes, and its snapshot
//! must come from the database.
//!
//! # Writes
//!
//! Every write of a cached entity invalidates the row entries of the rows
//! it affected (inserted ids too, which drops a cached "absent") and every
//! cached query of the entity (a new generation):
//!
//! * through a pool repository, once the write is done and before it
//!   returns: after success, and after a failure that may have written
//!   something (a missed deadline, a lost connection, an `insert_many` that
//!   stored documents before undoing them); a failure the server reported
//!   before writing anything (a duplicate key, a stale version, a missing
//!   document, a refused input) invalidates nothing;
//! * in a unit of work, recorded in the unit and applied after its COMMIT
//!   (also after a commit whose outcome is unknown, and again when a
//!   commit cut off mid-flight is resent in the background), before
//!   `commit` returns; a rollback or a dropped unit discards them. MongoDB
//!   units do not nest, so everything is recorded at level 0.
//!
//! `delete_where` on a cached entity first reads the `_id`s its filter
//! matches, then deletes each of those documents that still matches the
//! filter, and invalidates exactly those ids. A document inserted (or
//! changed to match) after that read is not deleted: the call deletes what
//! matched when it looked. Uncached entities keep the single `delete`.
//!
//! # Not durable
//!
//! MongoDB has no transactional outbox in reposmith, so an invalidation is
//! applied once, after the write: when it does not reach the cache server
//! (down, paused, failing over), the write still succeeds, this process
//! reads the database until the circuit breaker's replay grace has passed,
//! and other processes may serve the old entry until its TTL expires. Keep
//! the TTLs of MongoDB entities as short as that staleness is acceptable.

use std::future::Future;
use std::time::Duration;

use mongodb::bson::Document;
use reposmith_core::cache::{Cache, CachedRow, query_hash};
use reposmith_core::{Entity, Error, Result, Value};

use crate::MongoRepository;
use crate::executor::Executor;

/// The backend tag in every query hash of this backend.
const TAG: &[u8] = b"mongo";

impl<E: Entity> MongoRepository<E> {
    /// This repository reading the database always: no cached rows or
    /// queries are served or filled (a `.cached(..)` query simply runs).
    /// Its writes still invalidate the cache, so other readers never see
    /// what it replaced. Repositories of a unit of work never read the
    /// cache anyway.
    pub fn without_cache(mut self) -> Self {
        self.read_cache = false;
        self
    }

    /// The cache reads of `E` go through: attached, `E` cached, this a pool
    /// repository that was not made [`without_cache`](Self::without_cache).
    /// A tenant's repository of a tenant-scoped entity gets the tenant's
    /// partition of the cache ([`Cache::scoped_to`]).
    pub(crate) fn read_cache(&self) -> Option<Cache> {
        let cache = self.backend.cache()?;
        // A view beyond the default scope (`with_deleted`) reads the
        // database: its rows must never fill entries default reads use.
        let usable = self.read_cache
            && !self.exec.in_unit()
            && E::SCHEMA.cache.is_some()
            && self.scope.is_default_view(E::SCHEMA);
        usable.then(|| cache.scoped_to::<E>(&self.scope))
    }

    /// Whether writes of `E` through this repository invalidate a cache.
    pub(crate) fn invalidates(&self) -> bool {
        E::SCHEMA.cache.is_some() && self.backend.cache().is_some()
    }

    /// Invalidates the rows with ids `ids` and every cached query of `E`:
    /// now on the pool, after the commit in a unit of work. Nothing when
    /// `E` is not cached or no cache is attached.
    pub(crate) async fn invalidate(&self, ids: &[Value]) {
        if !self.invalidates() {
            return;
        }
        let Some(cache) = self.backend.cache() else {
            return;
        };
        // The tenant's partition: the entries this tenant's reads filled.
        let invalidation = cache.scoped_to::<E>(&self.scope).invalidation_of::<E>(ids);
        match &self.exec {
            // Armed: dropped mid-way, it is still applied (spawned).
            Executor::Client => {
                cache.arm(invalidation).apply().await;
            }
            // MongoDB units have no savepoints: every unit is level 0.
            Executor::Unit(unit) => unit.pending().record(0, invalidation),
        }
    }

    /// Runs a write of the rows with ids `ids`, then invalidates them when
    /// it succeeded or may have written something (see the module docs).
    pub(crate) async fn invalidating<T>(
        &self,
        ids: impl FnOnce(&T) -> Vec<Value>,
        fallback: &[Value],
        write: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let outcome = write.await;
        if self.invalidates() {
            match &outcome {
                Ok(done) => self.invalidate(&ids(done)).await,
                Err(error) if may_have_written(error) => self.invalidate(fallback).await,
                Err(_) => {}
            }
        }
        outcome
    }

    /// The hash naming a query of this repository: the backend tag, the
    /// database and collection, what kind of command, and the command as
    /// BSON bytes; `None` if the command does not encode (then it is not
    /// cached).
    pub(crate) fn query_hash(&self, kind: &str, command: &Document) -> Option<String> {
        let rendered = command.to_vec().ok()?;
        let database = self.backend.database().name();
        Some(query_hash([
            TAG,
            database.as_bytes(),
            self.collection.name().as_bytes(),
            kind.as_bytes(),
            rendered.as_slice(),
        ]))
    }

    /// The rows of a query, through the cache when `cached` asks for it and
    /// this repository reads the cache (else straight from `load`); `hash`
    /// is computed only then. See [`check_cached`] for the refusal.
    pub(crate) async fn cached_rows<F, Fut>(
        &self,
        cached: Option<Duration>,
        hash: impl FnOnce() -> Option<String>,
        load: F,
    ) -> Result<Vec<CachedRow>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<CachedRow>>>,
    {
        check_cached::<E>(cached)?;
        let cache = cached.zip(self.read_cache());
        match cache.and_then(|(ttl, cache)| Some((ttl, cache, hash()?))) {
            Some((ttl, cache, hash)) => cache.query::<E, _, _>(hash, ttl, load).await,
            None => load().await,
        }
    }
}

/// Refuses `.cached(..)` on an entity without `#[repo(cache(..))]`: nothing
/// would invalidate the result when the entity is written.
pub(crate) fn check_cached<E: Entity>(cached: Option<Duration>) -> Result<()> {
    if cached.is_none() || E::SCHEMA.cache.is_some() {
        return Ok(());
    }
    Err(Error::invalid(
        E::SCHEMA.entity,
        "cached",
        format!(
            "{} declares no #[repo(cache(..))], so its writes would never invalidate a cached \
             result; declare #[repo(cache(..))] on {} to cache its queries, or drop .cached(..)",
            E::SCHEMA.entity,
            E::SCHEMA.entity
        ),
    ))
}

/// Whether a failed write may have changed stored documents: anything but
/// the refusals a server (or reposmith, before sending) gives when nothing
/// was written.
pub(crate) fn may_have_written(error: &Error) -> bool {
    !matches!(
        error,
        Error::InvalidInput { .. }
            | Error::TooLarge { .. }
            | Error::Conflict { .. }
            | Error::StaleVersion { .. }
            | Error::NotFound { .. }
            | Error::Embedding { .. }
    )
}
