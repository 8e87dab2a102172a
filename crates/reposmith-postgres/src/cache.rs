//! The repository cache on PostgreSQL repositories.
//!
//! Pool reads of an entity declaring `#[repo(cache(..))]` go through the
//! attached [`Cache`]; reads through a unit of work never do (the unit must
//! see its own writes, and a SERIALIZABLE unit must read the database for
//! its conflict detection). Writes record what they invalidate:
//!
//! * in a unit of work, in the unit, applied after its outermost COMMIT
//!   (never before, nothing on rollback, a rolled-back savepoint drops its
//!   own) and, with durable invalidation (the default), also written to the
//!   transactional outbox in the same transaction, so the outbox relay
//!   replays any the cache server missed;
//! * on the pool, by running the write in a unit of its own (so the
//!   invalidation is durable the same way), or, with durable invalidation
//!   off, by invalidating right after the statement.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reposmith_core::cache::Cache;
use reposmith_core::{Entity, Error, FieldType, Result, Value};
use sqlx::PgConnection;

use crate::executor::Executor;
use crate::{PgBackend, PgRepository};

/// Row keys per outbox message, so a large `delete_where` stays far below
/// the outbox's payload cap.
pub(crate) const ROWS_PER_MESSAGE: usize = 2000;

/// How long a missing outbox table is believed missing before it is looked
/// for again.
const OUTBOX_RECHECK: Duration = Duration::from_secs(5);

/// Whether the outbox table exists, remembered: found once, it is assumed
/// to stay; missing, it is looked for again after [`OUTBOX_RECHECK`].
#[derive(Debug, Default)]
pub(crate) struct OutboxPresence {
    seen: Mutex<Option<(bool, Instant)>>,
}

impl PgBackend {
    /// Whether durable invalidations can be written (the outbox table
    /// exists), looked up on `connection`: the committing unit's own. On
    /// the pool it waited for a second connection while the unit held one,
    /// so on a busy pool (or a pool of one) it ran into the acquire timeout,
    /// read as "no table", and dropped the invalidation's durability after
    /// a five-second stall. A missing table is logged once per recheck and
    /// never fails the write that asked.
    pub(crate) async fn outbox_present_on(&self, connection: &mut PgConnection) -> Result<bool> {
        if let Some(known) = self.outbox_known() {
            return Ok(known);
        }
        let found = outbox_table_exists(connection)
            .await
            .map_err(|err| self.map_error(err))?;
        *self.outbox.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some((found, Instant::now()));
        if !found {
            tracing::warn!(
                target: "reposmith::cache",
                "no outbox table: cache invalidations are applied after COMMIT but not made \
                 durable (create it with Schemas::with_outbox() or \
                 PgBackend::create_outbox_tables, or turn durable_invalidation off)"
            );
        }
        Ok(found)
    }

    /// The remembered answer, while it holds.
    fn outbox_known(&self) -> Option<bool> {
        let seen = self.outbox.seen.lock().unwrap_or_else(|p| p.into_inner());
        match *seen {
            Some((true, _)) => Some(true),
            Some((false, at)) if at.elapsed() < OUTBOX_RECHECK => Some(false),
            _ => None,
        }
    }
}

/// Whether the outbox table is in `connection`'s search path. Read-only and
/// never an error for a missing table, so it is safe inside a transaction.
pub(crate) async fn outbox_table_exists(
    connection: &mut PgConnection,
) -> std::result::Result<bool, sqlx::Error> {
    let table = reposmith_core::outbox::SCHEMA.table;
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table)
        .fetch_one(connection)
        .await?;
    Ok(found.is_some())
}

/// How a write of this repository invalidates the cache.
pub(crate) enum WritePath {
    /// Nothing to invalidate: no cache, or `E` declares none.
    Plain,
    /// Run the write in a unit of its own (durable invalidation on the pool).
    OwnUnit,
    /// Invalidate right after the statement (pool, durable invalidation off).
    Direct,
    /// Record in the unit, applied after its commit.
    Unit,
}

impl<E: Entity> PgRepository<E> {
    /// The cache pool reads of `E` go through, if any: none for a
    /// repository in a unit, made `without_cache`, or `with_deleted`. A
    /// tenant's repository of a tenant-scoped entity gets the tenant's
    /// partition of the cache ([`Cache::scoped_to`]).
    pub(crate) fn read_cache(&self) -> Option<Cache> {
        match &self.exec {
            // A view beyond the default scope (`with_deleted`) reads the
            // database: its rows must never fill entries default reads use.
            Executor::Pool(backend)
                if self.use_cache
                    && E::SCHEMA.cache.is_some()
                    && self.scope.is_default_view(E::SCHEMA) =>
            {
                Some(backend.cache.as_ref()?.scoped_to::<E>(&self.scope))
            }
            _ => None,
        }
    }

    /// How this repository's writes invalidate.
    pub(crate) fn write_path(&self) -> WritePath {
        let Some(cache) = self.exec.backend().cache.as_ref() else {
            return WritePath::Plain;
        };
        if E::SCHEMA.cache.is_none() {
            return WritePath::Plain;
        }
        match (&self.exec, cache.options().durable_invalidation) {
            (Executor::Unit(..), _) => WritePath::Unit,
            (Executor::Pool(_), true) => WritePath::OwnUnit,
            (Executor::Pool(_), false) => WritePath::Direct,
        }
    }

    /// Records (in a unit) or applies (on the pool, durable off) the
    /// invalidation of rows `ids` of `E` and of its cached queries.
    pub(crate) async fn written(&self, ids: &[Value]) {
        let Some(cache) = self.exec.backend().cache.as_ref() else {
            return;
        };
        if E::SCHEMA.cache.is_none() {
            return;
        }
        // The tenant's partition: the entries this tenant's reads filled.
        let invalidation = cache.scoped_to::<E>(&self.scope).invalidation_of::<E>(ids);
        match &self.exec {
            Executor::Unit(shared, level) => shared.invalidations.record(*level, invalidation),
            Executor::Pool(_) => {
                // Armed: a caller that drops this future mid-way still
                // gets the invalidation applied (on a spawned task).
                cache.arm(invalidation).apply().await;
            }
        }
    }

    /// The invalidation of the typed `ids`.
    pub(crate) async fn written_ids(&self, ids: &[&E::Id]) {
        let values: Vec<Value> = ids.iter().map(|id| id.to_value()).collect();
        self.written(&values).await;
    }

    /// Runs `work` on this repository's twin in a unit of work of its own
    /// and commits it: the write and its durable invalidation commit
    /// together, and the invalidation is applied after that COMMIT.
    pub(crate) async fn in_own_unit<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(PgRepository<E>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let unit = self.exec.backend().begin().await?;
        // The twin keeps this repository's view (`with_deleted`).
        let mut twin = unit.repo_of::<E>().rescoped(self.scope.clone());
        twin.embedder = self.embedder.clone();
        match work(twin).await {
            Ok(value) => {
                unit.commit().await?;
                Ok(value)
            }
            Err(error) => {
                let _ = unit.rollback().await;
                Err(error)
            }
        }
    }

    /// This repository reading the database always, never the cache (its
    /// writes still invalidate).
    pub fn without_cache(mut self) -> Self {
        self.use_cache = false;
        self
    }

    /// Refuses `.cached(..)` on an entity that declares no cache: its
    /// writes would not invalidate the cached result.
    pub(crate) fn check_cached_query(&self, cached: Option<Duration>) -> Result<()> {
        match (cached, E::SCHEMA.cache) {
            (Some(_), None) => Err(Error::invalid(
                E::SCHEMA.entity,
                "cached",
                "a cached query needs #[repo(cache(..))] on the entity, so its writes \
                 invalidate the result",
            )),
            (Some(ttl), Some(_)) if ttl.is_zero() => Err(Error::invalid(
                E::SCHEMA.entity,
                "cached",
                "the TTL of a cached query must be above zero",
            )),
            _ => Ok(()),
        }
    }
}
