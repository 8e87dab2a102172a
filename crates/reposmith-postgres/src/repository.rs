//! [`PgRepository`]: [`Repository`] for PostgreSQL.
//!
//! Fixed-shape statements come from the per-entity cache in
//! [`crate::statements`]; filtered ones are rendered per call by
//! [`crate::query`]. Every operation runs in a `reposmith.query` span that
//! records the table and the rows affected, never a bound value.

use std::marker::PhantomData;
use std::sync::Arc;

use reposmith_core::{
    Entity, EntitySchema, Error, Filter, FindQuery, Page, PatchQuery, PostgresEntity, Repository,
    Result, RowScope, UpdateQuery, Updated, Value,
};
use reposmith_core::{keyset, stamp};
use sea_query::Values;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;
use tracing::Instrument;

use crate::bind::{PgQuery, array_of, bind_all, decode_row, to_sea};
use crate::executor::{Bounded, Executor};
use crate::replica::Route;
use crate::statements::{Statements, statements};
use crate::unit::UnitShared;
use crate::validate::check_row;
use crate::write::{id_text, stamp_new, stamp_update, version_number};
use crate::{PgBackend, query};

/// Runs a write directly, or in a unit of its own when the entity is
/// cached and its invalidations are durable (see the `cache` module).
/// A write in a [`Session`](crate::Session) records the position of its commit there.
macro_rules! write_path {
    ($repo:expr, |$twin:ident| $work:expr) => {{
        let guard = $repo.track_guard();
        let written = match $repo.write_path() {
            crate::cache::WritePath::OwnUnit => {
                $repo.in_own_unit(|$twin| async move { $work.await }).await
            }
            _ => {
                let $twin = $repo;
                $work.await
            }
        };
        // Also when the outcome is unknown: waiting for a write that did
        // not happen costs a wait; missing one that did is a stale read.
        if crate::replica::may_have_committed(&written) {
            $repo.track_commit().await;
        }
        guard.disarm();
        written
    }};
}

/// The repository of entity `E` on a pool or on a unit of work's transaction.
pub struct PgRepository<E> {
    pub(crate) exec: Executor,
    pub(crate) statements: Arc<Statements>,
    /// Fills `#[repo(embed(..))]` vectors; see [`PgRepository::with_embedder`].
    pub(crate) embedder: Option<Arc<dyn reposmith_core::Embedder>>,
    /// Whether pool reads may use the backend's cache ([`PgRepository::without_cache`]).
    pub(crate) use_cache: bool,
    /// Where pool reads go and which session they follow ([`PgRepository::on_primary`]).
    pub(crate) route: Route,
    /// The implicit conditions of every read, update and delete (live rows
    /// only, unless [`Repository::with_deleted`]).
    pub(crate) scope: RowScope,
    entity: PhantomData<fn() -> E>,
}

impl<E> Clone for PgRepository<E> {
    fn clone(&self) -> Self {
        PgRepository {
            exec: self.exec.clone(),
            statements: Arc::clone(&self.statements),
            embedder: self.embedder.clone(),
            use_cache: self.use_cache,
            route: self.route.clone(),
            scope: self.scope.clone(),
            entity: PhantomData,
        }
    }
}

impl<E> std::fmt::Debug for PgRepository<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = if self.exec.in_unit() {
            "unit of work"
        } else {
            "pool"
        };
        f.debug_struct("PgRepository").field("on", &on).finish()
    }
}

impl PgBackend {
    /// The repository of `E` on this backend's pool: each operation takes a
    /// connection and returns it when done.
    pub fn repo<E: PostgresEntity>(&self) -> PgRepository<E> {
        self.repo_of()
    }

    /// [`repo`](Self::repo) for code already holding proof that Postgres
    /// stores `E` in another form (`E: StoredIn<Postgres>`).
    pub(crate) fn repo_of<E: Entity>(&self) -> PgRepository<E> {
        PgRepository::new(Executor::Pool(Box::new(self.clone())))
    }
}

/// A statement with an audited SQL string and its values bound.
pub(crate) fn statement(sql: &Arc<str>, values: Vec<sea_query::Value>) -> PgQuery<'static> {
    // Safe: the text comes from sea-query over schema identifiers; values are never in it.
    bind_all(sqlx::query(AssertSqlSafe(Arc::clone(sql))), Values(values))
}

/// A `reposmith.query` span for `operation` on `table`.
pub(crate) fn span(operation: &'static str, table: &'static str) -> tracing::Span {
    tracing::info_span!(
        "reposmith.query",
        db.system = "postgresql",
        db.operation = operation,
        db.collection = table,
        db.rows_affected = tracing::field::Empty,
        reposmith.server = tracing::field::Empty,
        reposmith.waited_us = tracing::field::Empty,
        reposmith.fallback = tracing::field::Empty,
    )
}

/// Records the rows an operation touched on the current span.
pub(crate) fn record_rows(rows: u64) {
    tracing::Span::current().record("db.rows_affected", rows);
}

impl<E: Entity> PgRepository<E> {
    fn new(exec: Executor) -> Self {
        let embedder = exec.backend().embedder_for::<E>();
        let scope = RowScope::of_tenant(E::SCHEMA, exec.tenant());
        PgRepository {
            exec,
            statements: statements(std::any::TypeId::of::<E>(), E::SCHEMA, &scope),
            embedder,
            use_cache: true,
            route: Route::default(),
            scope,
            entity: PhantomData,
        }
    }

    /// `filter` restricted to this repository's row scope: what every
    /// filtered statement (find, pages, count, exists, delete_where,
    /// searches) renders. Fixed-shape statements carry the same conditions
    /// (`render::scope_expr`) and bind [`PgRepository::scoped_params`].
    /// A refused scope (a tenant-scoped entity without a tenant) is its
    /// typed error.
    pub(crate) fn scoped(&self, filter: Filter<E>) -> Result<Filter<E>> {
        self.scope.check()?;
        Ok(self.scope.apply(filter))
    }

    /// `params` followed by the row scope's values: the parameters of a
    /// fixed-shape statement. A refused scope is its typed error.
    pub(crate) fn scoped_params(
        &self,
        mut params: Vec<sea_query::Value>,
    ) -> Result<Vec<sea_query::Value>> {
        self.scope.check()?;
        let columns = self.schema().columns;
        params.extend(
            self.scope
                .values()
                .into_iter()
                .map(|(i, value)| to_sea(value, &columns[i].ty)),
        );
        Ok(params)
    }

    /// `entities` with the scope's tenant stamped (see
    /// [`RowScope::stamp`]), for the bulk paths that take entities; `None`
    /// when the scope stamps nothing (no copy is made).
    pub(crate) fn stamped_entities(&self, entities: &[E]) -> Result<Option<Vec<E>>> {
        self.scope.stamp_entities(entities)
    }

    /// This repository under `scope`, with the statements of its shape.
    pub(crate) fn rescoped(mut self, scope: RowScope) -> Self {
        self.statements = statements(std::any::TypeId::of::<E>(), E::SCHEMA, &scope);
        self.scope = scope;
        self
    }

    /// A repository on `shared`'s transaction for the unit at `level`
    /// (0: the unit itself, n: the nested unit with savepoint n).
    pub(crate) fn on_unit(shared: Arc<UnitShared>, level: usize) -> Self {
        PgRepository::new(Executor::Unit(shared, level))
    }

    pub(crate) fn schema(&self) -> &'static EntitySchema {
        E::SCHEMA
    }

    /// The clock this repository stamps rows with: its backend's.
    pub(crate) fn clock(&self) -> &reposmith_core::Clock {
        self.exec.backend().clock()
    }

    /// The values of `positions`, typed for binding.
    pub(crate) fn params(&self, values: &[Value], positions: &[usize]) -> Vec<sea_query::Value> {
        let columns = self.schema().columns;
        positions
            .iter()
            .map(|&i| to_sea(values[i].clone(), &columns[i].ty))
            .collect()
    }

    /// Refuses `params`, bound from the schema's `positions` in that order,
    /// when they exceed the backend's bind cap; the error names the largest field.
    pub(crate) fn check_bind(
        &self,
        params: &[sea_query::Value],
        positions: &[usize],
    ) -> Result<()> {
        let schema = self.schema();
        crate::bind::check_bound_size(
            self.exec.backend().max_bind_bytes(),
            schema.entity,
            params,
            |i| positions.get(i).map(|&c| schema.columns[c].field),
        )
    }

    pub(crate) fn entity(&self, row: &PgRow) -> Result<E> {
        E::from_values(decode_row(self.schema(), row)?)
    }

    async fn fetch_optional(
        &self,
        sql: &Arc<str>,
        params: Vec<sea_query::Value>,
    ) -> Result<Option<E>> {
        let query = statement(sql, params);
        let row = self
            .exec
            .write(self.schema(), |held| {
                Box::pin(query.fetch_optional(&mut **held))
            })
            .await?;
        record_rows(u64::from(row.is_some()));
        row.map(|row| self.entity(&row)).transpose()
    }

    async fn write_one(&self, sql: &Arc<str>, params: Vec<sea_query::Value>) -> Result<E> {
        let stored = self.fetch_optional(sql, params).await?;
        stored.ok_or_else(|| Error::Backend {
            backend: reposmith_core::Backend::Postgres,
            code: None,
            reason: "a write with RETURNING returned no row".to_owned(),
        })
    }

    /// The entity's values stamped by `stamp`, missing embeddings filled and
    /// everything checked. Runs before the statement deadline starts: an
    /// embedder's latency is its own (give the model client a timeout).
    async fn prepared(
        &self,
        entity: &E,
        stamp: fn(&EntitySchema, &mut [Value], &reposmith_core::Clock),
    ) -> Result<Vec<Value>> {
        let mut values = entity.to_values()?;
        self.scope.stamp(self.schema(), &mut values)?;
        stamp(self.schema(), &mut values, self.clock());
        crate::embed::fill_row(self, &mut values).await?;
        check_row(self.schema(), &values)?;
        Ok(values)
    }

    async fn insert_one(&self, values: Vec<Value>) -> Result<E> {
        let params = self.params(&values, &self.statements.insert_columns);
        self.check_bind(&params, &self.statements.insert_columns)?;
        self.write_one(&self.statements.insert, params).await
    }

    async fn update_one(&self, values: Vec<Value>) -> Result<E> {
        let schema = self.schema();
        let mut positions = self.statements.update_columns.clone();
        positions.push(schema.id);
        if let Some((i, _)) = schema.version_column() {
            positions.push(i);
        }
        let params = self.params(&values, &positions);
        self.check_bind(&params, &positions)?;
        let params = self.scoped_params(params)?;
        match self.fetch_optional(&self.statements.update, params).await? {
            Some(stored) => Ok(stored),
            None => Err(self.update_miss(&values).await?),
        }
    }

    /// Why an update matched no row: the row is gone, or (versioned) someone wrote first.
    async fn update_miss(&self, values: &[Value]) -> Result<Error> {
        let schema = self.schema();
        let id = values[schema.id].clone();
        let params = self.scoped_params(self.params(values, &[schema.id]))?;
        let sql = &self.statements.exists;
        // On the primary: the update that missed ran there.
        let primary = Route::primary();
        let exists = self
            .exec
            .read(&primary, schema, |held| {
                Box::pin(statement(sql, params.clone()).fetch_optional(&mut **held))
            })
            .await?
            .is_some();
        Ok(match schema.version_column() {
            Some((i, _)) if exists => Error::StaleVersion {
                entity: schema.entity,
                id: id_text(&id),
                expected: version_number(&values[i]),
            },
            _ => Error::NotFound {
                entity: schema.entity,
                id: id_text(&id),
            },
        })
    }

    async fn upsert_one(&self, values: Vec<Value>) -> Result<E> {
        let all: Vec<usize> = (0..values.len()).collect();
        let params = self.params(&values, &all);
        self.check_bind(&params, &all)?;
        self.upsert_row(&self.statements.upsert, params).await
    }

    /// Runs an upsert: a tenant entity's upsert returns no row when the
    /// conflicting row belongs to another tenant (its `DO UPDATE` is
    /// conditional), which is a conflict on the key, never an overwrite.
    async fn upsert_row(&self, sql: &Arc<str>, params: Vec<sea_query::Value>) -> Result<E> {
        let schema = self.schema();
        match schema.tenant_column() {
            Some((_, tenant)) => {
                self.fetch_optional(sql, params)
                    .await?
                    .ok_or_else(|| Error::Conflict {
                        entity: schema.entity,
                        constraint: format!("{} (a row of another tenant)", schema.table),
                        field: Some(tenant.field),
                    })
            }
            None => self.write_one(sql, params).await,
        }
    }

    /// Inserts `entity`, or where a row already has its value of the unique
    /// column `key`, overwrites that row's other fields (its id and
    /// `created_at` are kept, a version is bumped), in one statement.
    ///
    /// `key` must be a `#[repo(unique)]` column, else [`Error::InvalidInput`].
    /// As with any upsert racing on one key, a conflict on a *different*
    /// unique index is reported as [`Error::Conflict`].
    pub async fn upsert_on<T: reposmith_core::FieldType>(
        &self,
        entity: &E,
        key: reposmith_core::Column<E, T>,
    ) -> Result<E> {
        write_path!(self, |repo| repo.upsert_on_impl(entity, key))
    }

    async fn upsert_on_impl<T: reposmith_core::FieldType>(
        &self,
        entity: &E,
        key: reposmith_core::Column<E, T>,
    ) -> Result<E> {
        let schema = self.schema();
        let index = key.index();
        if !schema.columns[index].unique {
            let reason = "upsert_on needs a #[repo(unique)] column to detect the conflict";
            return Err(Error::invalid(
                schema.entity,
                schema.columns[index].field,
                reason,
            ));
        }
        let sql = crate::statements::upsert_on_sql(
            schema,
            &self.statements.insert_columns,
            &self.statements.update_columns,
            index,
        );
        let values = self.prepared(entity, stamp_new).await?;
        let params = self.params(&values, &self.statements.insert_columns);
        self.check_bind(&params, &self.statements.insert_columns)?;
        let stored = self
            .upsert_row(&sql, params)
            .instrument(span("upsert", schema.table))
            .bounded(&self.exec)
            .await?;
        self.written_ids(&[stored.id()]).await;
        Ok(stored)
    }

    /// Deletes the rows whose `#[repo(ttl = "..")]` timestamp is older than
    /// the lifetime (Postgres has no TTL of its own: call this from a
    /// scheduled job); returns how many. Entities without a TTL delete nothing.
    /// Expired rows are removed, not soft-deleted, and whether or not they
    /// already were.
    pub async fn purge_expired(&self) -> Result<u64> {
        let schema = self.schema();
        let Some((index, _, seconds)) = schema.ttl_column() else {
            return Ok(0);
        };
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        let cutoff = self.clock().now()
            - chrono::TimeDelta::try_seconds(seconds).unwrap_or(chrono::TimeDelta::MAX);
        let column = reposmith_core::Column::<E, chrono::DateTime<chrono::Utc>>::at(index);
        // Expired rows go for good, soft-deleted or not.
        self.scope.check()?;
        let filter = self.scope.clone().with_deleted().apply(column.lt(cutoff));
        write_path!(self, |repo| repo.remove_where(filter, query::Removal::Hard))
    }

    /// Removes the row by id (soft-deletes it when the entity soft-deletes).
    async fn delete_one(&self, id: &E::Id) -> Result<bool> {
        match &self.statements.soft {
            Some(soft) => self.stamp_one(&soft.delete, soft.stamp, true, id).await,
            None => self.execute_by_id(&self.statements.delete, id).await,
        }
    }

    /// A soft delete (`deleting`) or a restore of the row with `id`: the
    /// time bound once per stamped column, then the id and the scope.
    async fn stamp_one(
        &self,
        sql: &Arc<str>,
        stamp: stamp::SoftDeleteStamp,
        deleting: bool,
        id: &E::Id,
    ) -> Result<bool> {
        let schema = self.schema();
        let now = Value::TimestampTz(self.clock().now());
        let stamped = deleting
            .then_some(stamp.column)
            .into_iter()
            .chain(stamp.updated_at);
        let mut params: Vec<sea_query::Value> = stamped
            .map(|i| to_sea(now.clone(), &schema.columns[i].ty))
            .collect();
        params.push(self.id_param(id)?);
        let query = statement(sql, self.scoped_params(params)?);
        let done = self
            .exec
            .write(schema, |held| Box::pin(query.execute(&mut **held)))
            .await?;
        record_rows(done.rows_affected());
        Ok(done.rows_affected() > 0)
    }

    /// Runs `sql`, a statement by id, with the scope's values.
    async fn execute_by_id(&self, sql: &Arc<str>, id: &E::Id) -> Result<bool> {
        let query = statement(sql, self.scoped_params(vec![self.id_param(id)?])?);
        let done = self
            .exec
            .write(self.schema(), |held| Box::pin(query.execute(&mut **held)))
            .await?;
        record_rows(done.rows_affected());
        Ok(done.rows_affected() > 0)
    }

    fn id_param(&self, id: &E::Id) -> Result<sea_query::Value> {
        use reposmith_core::FieldType;
        let schema = self.schema();
        let value = id.to_value();
        crate::validate::check_value(schema.entity, schema.id_column().field, &value)?;
        let param = to_sea(value, &schema.id_column().ty);
        self.check_bind(std::slice::from_ref(&param), &[schema.id])?;
        Ok(param)
    }

    async fn get_many_ids(&self, ids: &[E::Id]) -> Result<Vec<E>> {
        use reposmith_core::FieldType;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let schema = self.schema();
        let values: Vec<Value> = ids.iter().map(FieldType::to_value).collect();
        for v in &values {
            crate::validate::check_value(schema.entity, schema.id_column().field, v)?;
        }
        let list = array_of(values, &schema.id_column().ty);
        self.check_bind(std::slice::from_ref(&list), &[schema.id])?;
        let sql = &self.statements.get_many;
        let params = self.scoped_params(vec![list])?;
        let rows = self
            .exec
            .read(&self.route, schema, |held| {
                Box::pin(statement(sql, params.clone()).fetch_all(&mut **held))
            })
            .await?;
        record_rows(rows.len() as u64);
        rows.iter().map(|row| self.entity(row)).collect()
    }
}

impl<E: Entity> PgRepository<E> {
    async fn insert_impl(&self, entity: &E) -> Result<E> {
        let span = span("insert", E::SCHEMA.table);
        let values = self.prepared(entity, stamp_new).await?;
        let stored = self
            .insert_one(values)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        self.written_ids(&[stored.id()]).await;
        Ok(stored)
    }

    async fn insert_many_impl(&self, entities: &[E]) -> Result<u64> {
        let span = span("insert_many", E::SCHEMA.table);
        let stamped = self.stamped_entities(entities)?;
        let entities = stamped.as_deref().unwrap_or(entities);
        // Embedded before the transaction opens and the deadline starts.
        let fills = crate::bulk::embedded(self, entities).await?;
        let count = crate::bulk::insert_many(self, entities, &fills)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        let ids: Vec<Value> = entities
            .iter()
            .map(|e| reposmith_core::FieldType::to_value(e.id()))
            .collect();
        self.written(&ids).await;
        Ok(count)
    }

    async fn update_impl(&self, entity: &E) -> Result<E> {
        let span = span("update", E::SCHEMA.table);
        let values = self.prepared(entity, stamp_update).await?;
        let stored = self
            .update_one(values)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        self.written_ids(&[stored.id()]).await;
        Ok(stored)
    }

    async fn upsert_impl(&self, entity: &E) -> Result<E> {
        let span = span("upsert", E::SCHEMA.table);
        let values = self.prepared(entity, stamp_new).await?;
        let stored = self
            .upsert_one(values)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        self.written_ids(&[stored.id()]).await;
        Ok(stored)
    }

    async fn delete_impl(&self, id: &E::Id) -> Result<bool> {
        let span = span("delete", E::SCHEMA.table);
        let deleted = self
            .delete_one(id)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        if deleted {
            self.written_ids(&[id]).await;
        }
        Ok(deleted)
    }

    async fn delete_where_impl(&self, filter: Filter<E>) -> Result<u64> {
        let schema = E::SCHEMA;
        let (filter, removal) = match stamp::soft_delete_stamp(schema) {
            // A soft delete targets live rows whatever the view.
            Some(stamp) => (
                self.scope
                    .check()
                    .map(|()| self.scope.clone().live(schema).apply(filter))?,
                query::Removal::Soft(stamp),
            ),
            None => (self.scoped(filter)?, query::Removal::Hard),
        };
        self.remove_where(filter, removal).await
    }

    /// Removes the rows `filter` (already scoped) matches, and invalidates them.
    async fn remove_where(&self, filter: Filter<E>, removal: query::Removal) -> Result<u64> {
        let span = span("delete", E::SCHEMA.table);
        let returning = !matches!(self.write_path(), crate::cache::WritePath::Plain);
        let ids = query::delete_where(self, filter, returning, removal)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        if let query::Deleted::Ids(ids) = &ids {
            self.written(ids).await;
        }
        Ok(ids.count())
    }

    async fn patch_impl(&self, query: PatchQuery<E>) -> Result<E> {
        let span = span("update", E::SCHEMA.table);
        let parts = crate::patch::prepare(self, query.changes).await?;
        let stored = crate::patch::patch(self, &query.id, &parts, query.expected_version)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        self.written_ids(&[stored.id()]).await;
        Ok(stored)
    }

    async fn update_where_impl(&self, query: UpdateQuery<E>) -> Result<Updated<E>> {
        use crate::patch::Returned;
        let span = span("update", E::SCHEMA.table);
        let parts = crate::patch::prepare(self, query.changes).await?;
        let returned = match (query.returning, self.write_path()) {
            (true, _) => Returned::Rows,
            (false, crate::cache::WritePath::Plain) => Returned::Count,
            (false, _) => Returned::Ids,
        };
        let (count, rows, ids) = crate::patch::update_where(self, query.filter, &parts, returned)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        if !ids.is_empty() {
            self.written(&ids).await;
        }
        Ok(Updated::new(count, rows))
    }

    async fn restore_impl(&self, id: &E::Id) -> Result<bool> {
        let schema = E::SCHEMA;
        let soft = self.statements.soft.as_ref();
        let soft = soft.ok_or_else(|| stamp::not_soft_deleting(schema.entity, "restore"))?;
        let restored = self
            .stamp_one(&soft.restore, soft.stamp, false, id)
            .instrument(span("update", schema.table))
            .bounded(&self.exec)
            .await?;
        if restored {
            self.written_ids(&[id]).await;
        }
        Ok(restored)
    }

    async fn purge_impl(&self, id: &E::Id) -> Result<bool> {
        let purged = self
            .execute_by_id(&self.statements.purge, id)
            .instrument(span("delete", E::SCHEMA.table))
            .bounded(&self.exec)
            .await?;
        if purged {
            self.written_ids(&[id]).await;
        }
        Ok(purged)
    }

    async fn purge_deleted_impl(&self, older_than: std::time::Duration) -> Result<u64> {
        let schema = E::SCHEMA;
        let Some((index, _)) = schema.soft_delete_column() else {
            return Err(stamp::not_soft_deleting(schema.entity, "purge_deleted"));
        };
        let cutoff = stamp::purge_cutoff(schema.entity, self.clock().now(), older_than)?;
        let deleted = reposmith_core::Column::<E, Option<chrono::DateTime<chrono::Utc>>>::at(index);
        self.scope.check()?;
        let filter = self.scope.clone().with_deleted().apply(deleted.lt(cutoff));
        self.remove_where(filter, query::Removal::Hard).await
    }

    /// The row by id from the database, under the caller's span.
    async fn get_uncached(&self, id: &E::Id) -> Result<Option<E>> {
        let params = self.scoped_params(vec![self.id_param(id)?])?;
        let sql = &self.statements.get;
        let row = self
            .exec
            .read(&self.route, self.schema(), |held| {
                Box::pin(statement(sql, params.clone()).fetch_optional(&mut **held))
            })
            .bounded(&self.exec)
            .await?;
        record_rows(u64::from(row.is_some()));
        row.map(|row| self.entity(&row)).transpose()
    }
}

impl<E: Entity> Repository<E> for PgRepository<E> {
    async fn insert(&self, entity: &E) -> Result<E> {
        write_path!(self, |repo| repo.insert_impl(entity))
    }

    async fn insert_many(&self, entities: &[E]) -> Result<u64> {
        write_path!(self, |repo| repo.insert_many_impl(entities))
    }

    /// The cache's hit, miss and refused-fill events land on this span.
    async fn get(&self, id: &E::Id) -> Result<Option<E>> {
        self.scope.check()?;
        let span = span("select", E::SCHEMA.table);
        match self.read_cache() {
            Some(cache) => {
                let primary = self.for_cache_fill();
                cache
                    .row::<E, _, _>(id, || primary.get_uncached(id))
                    .instrument(span)
                    .await
            }
            None => self.get_uncached(id).instrument(span).await,
        }
    }

    async fn get_many(&self, ids: &[E::Id]) -> Result<Vec<E>> {
        self.scope.check()?;
        let span = span("select", E::SCHEMA.table);
        let primary = self.for_cache_fill();
        let load = |missing: Vec<E::Id>| async move {
            primary.get_many_ids(&missing).bounded(&primary.exec).await
        };
        match self.read_cache() {
            Some(cache) => cache.rows::<E, _, _>(ids, load).instrument(span).await,
            None => {
                self.get_many_ids(ids)
                    .bounded(&self.exec)
                    .instrument(span)
                    .await
            }
        }
    }

    async fn update(&self, entity: &E) -> Result<E> {
        write_path!(self, |repo| repo.update_impl(entity))
    }

    async fn upsert(&self, entity: &E) -> Result<E> {
        write_path!(self, |repo| repo.upsert_impl(entity))
    }

    async fn delete(&self, id: &E::Id) -> Result<bool> {
        write_path!(self, |repo| repo.delete_impl(id))
    }

    async fn delete_where(&self, filter: Filter<E>) -> Result<u64> {
        write_path!(self, |repo| repo.delete_where_impl(filter))
    }

    /// One `UPDATE .. RETURNING`; see the `patch` module.
    async fn patch_one(&self, query: PatchQuery<E>) -> Result<E> {
        write_path!(self, |repo| repo.patch_impl(query))
    }

    /// One `UPDATE .. WHERE filter`; on a cached entity it returns the ids
    /// it wrote, and each is invalidated.
    async fn update_matching(&self, query: UpdateQuery<E>) -> Result<Updated<E>> {
        write_path!(self, |repo| repo.update_where_impl(query))
    }

    async fn restore(&self, id: &E::Id) -> Result<bool> {
        write_path!(self, |repo| repo.restore_impl(id))
    }

    async fn purge_deleted(&self, older_than: std::time::Duration) -> Result<u64> {
        write_path!(self, |repo| repo.purge_deleted_impl(older_than))
    }

    async fn purge(&self, id: &E::Id) -> Result<bool> {
        write_path!(self, |repo| repo.purge_impl(id))
    }

    fn with_deleted(&self) -> Self {
        self.clone().rescoped(self.scope.clone().with_deleted())
    }

    async fn fetch(&self, mut query: FindQuery<E>) -> Result<Vec<E>> {
        query.filter = self.scoped(query.filter)?;
        self.check_cached_query(query.cached)?;
        let span = span("select", E::SCHEMA.table);
        let limit = query.limit;
        let cache = self.read_cache().zip(query.cached);
        let rows = match cache {
            Some((cache, ttl)) => {
                query::fetch_cached(&self.for_cache_fill(), &cache, ttl, query, limit)
                    .instrument(span)
                    .await?
            }
            None => {
                return query::fetch_entities(self, query, limit)
                    .instrument(span)
                    .bounded(&self.exec)
                    .await;
            }
        };
        rows.into_iter().map(E::from_values).collect()
    }

    /// One page of `size` rows and the cursor of the next page, `None` when
    /// this page is the last. The order is the query's sort keys then the id
    /// ascending; see the `keyset` module for NULL placement.
    async fn fetch_page(&self, mut query: FindQuery<E>, size: u64) -> Result<Page<E>> {
        query.filter = self.scoped(query.filter)?;
        self.check_cached_query(query.cached)?;
        let span = span("select", E::SCHEMA.table);
        // A cached page is its own entry (the cursor is part of its SQL values).
        if let (Some(cache), Some(ttl)) = (self.read_cache(), query.cached) {
            let primary = self.for_cache_fill();
            return keyset::fetch_page(query, size, |query, limit| {
                query::fetch_cached(&primary, &cache, ttl, query, Some(limit))
            })
            .instrument(span)
            .await;
        }
        keyset::fetch_page(query, size, |query, limit| {
            query::fetch(self, query, Some(limit))
        })
        .instrument(span)
        .bounded(&self.exec)
        .await
    }

    async fn count(&self, filter: Filter<E>) -> Result<u64> {
        let span = span("count", E::SCHEMA.table);
        query::count(self, self.scoped(filter)?)
            .instrument(span)
            .bounded(&self.exec)
            .await
    }

    async fn exists(&self, filter: Filter<E>) -> Result<bool> {
        let span = span("exists", E::SCHEMA.table);
        query::exists(self, self.scoped(filter)?)
            .instrument(span)
            .bounded(&self.exec)
            .await
    }
}
