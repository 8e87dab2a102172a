//! PostgreSQL backend of reposmith: [`PgRepository`], which implements
//! [`reposmith_core::Repository`] for any entity on the pool or inside a
//! [`PgUnitOfWork`]; reposmith's own connection pool (no ping on release;
//! see the `pool` module for why); retried units of work; binary-COPY bulk
//! inserts; error mapping onto [`reposmith_core::Error`]; a health probe;
//! the DDL of an entity ([`create_table_sql`]); and an opt-in monitor of
//! vector search recall with an `ef_search`/`probes` tuner ([`recall`]).
//!
//! SQL is built with sea-query from the entity schema: identifiers only from
//! the schema, every value a bound parameter.
//!
//! # Tenants and row-level security
//!
//! [`PgBackend::for_tenant`] gives a handle whose repositories and units of
//! work of `#[repo(tenant)]` entities compare the tenant column with the
//! tenant (bound) in every statement and stamp it on every write. The
//! database enforces the same: [`create_table_sql`] and generated
//! migrations `ENABLE ROW LEVEL SECURITY` on such a table (not `FORCE`)
//! with the policy [`TENANT_POLICY`], `USING` and `WITH CHECK`
//! [`tenant_policy_condition`]: the column equals the `reposmith.tenant`
//! setting cast to its type; unset or empty, the setting matches no row
//! (never an error, never every row).
//!
//! How the setting reaches the server: in Direct mode the pooled session
//! carries the handle's tenant (`set_config(.., false)`, sent only when the
//! connection's tag differs from the wanted tenant, so a steady workload
//! pays nothing); a unit of work's connection is tagged before `BEGIN`, so
//! it holds for the whole unit and cannot change midway; a connection
//! whose `set_config` failed is closed, never pooled with an uncertain
//! tenant; [`PgBackend::acquire`] hands out connections with the setting
//! emptied. Behind a transaction pooler ([`PoolerMode::Transaction`]) every
//! transaction sets it locally (`set_config(.., true)`) after `BEGIN`.
//!
//! Roles: the migration role (`PgConfig::migration_url`) owns the tables,
//! so the policy does not apply to it (it sees every row, as migrations
//! and `create_tables` need). The application role must not own them and
//! must not have `BYPASSRLS`; grant it DML only:
//!
//! ```sql
//! CREATE ROLE app LOGIN NOBYPASSRLS PASSWORD '...';
//! GRANT USAGE ON SCHEMA app_schema TO app;
//! ALTER DEFAULT PRIVILEGES FOR ROLE owner IN SCHEMA app_schema
//!     GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app;
//! ```
//!
//! Raw SQL through the application role then sees the rows of the tenant
//! its session set, and none without one.
//!
//! # The repository cache
//!
//! With a cache attached ([`PgBackend::with_cache`]; the facade's `Store`
//! attaches the Redis one), pool reads of an entity declaring
//! `#[repo(cache(..))]` — `get`, `get_many`, the unique finders and queries
//! or searches marked `.cached(ttl)` — go through it. Reads through a unit
//! of work never do: the unit must see its own writes, and a SERIALIZABLE
//! unit must read the database for its conflict detection. A write of a
//! cached entity records what it invalidates in its unit of work (a pool
//! write runs in a unit of its own); the unit applies it after its
//! outermost COMMIT, before `commit()` returns, and, with durable
//! invalidation (the default), also writes it to the transactional outbox
//! in the same transaction, so an outbox relay routing the topic
//! `reposmith.cache` to an `InvalidationReplay` applies any the cache
//! server missed once it answers again. Durable invalidation needs the
//! outbox tables (`Schemas::with_outbox()`, or
//! [`PgBackend::create_outbox_tables`]). `insert_many` and `bulk_load`
//! invalidate the rows whose ids they were given and every cached query;
//! ids the database assigns during them are not known, so an absent-row
//! entry cached for such an id before it existed lives until its
//! `negative_ttl`.
//!
//! # Behind PgBouncer
//!
//! A transaction pooler (PgBouncer with `pool_mode = transaction`, and
//! services built on it) lends a server connection for one transaction at
//! a time. sqlx's default prepared statements are wrong there: behind
//! PgBouncer 1.18, 294 of 2,000 concurrent queries returned another
//! query's rows and 1,064 failed. Connect through one with
//! `PgConfig::pooler(PoolerMode::Transaction)` (or
//! `REPOSMITH_PG_POOLER=transaction`); then:
//!
//! - every operation on the pool (repository reads and writes, searches,
//!   the health ping, the outbox's admin statements) runs as `BEGIN` and
//!   the session settings in one round trip, its statements, then `COMMIT`;
//!   after a failure `ROLLBACK`, or, when the session's state is unknown
//!   (a broken or cancelled statement), the connection is closed. A pooled
//!   connection is never left in a transaction;
//! - the session settings are `statement_timeout`, `hnsw.ef_search` when
//!   configured, pgvector's iterative scans when on, and every
//!   `-c name=value` of the URL's `options` (a `search_path`, say), in that
//!   order; each transaction sets them with `set_config(name, value, true)`,
//!   which is `SET LOCAL`, so nothing outlives the transaction on a server
//!   connection another client gets next. Nothing is sent as a startup
//!   `options` parameter (PgBouncer refuses it), nor `extra_float_digits`;
//!   `PGOPTIONS` is refused;
//! - units of work send the settings with their `BEGIN`; `insert_many`
//!   always runs in a unit of its own;
//! - no statement is named: connections keep no statement cache
//!   (`statement_cache_capacity` is ignored), and with none sqlx 0.9 sends
//!   every statement, its own type lookups included, as the unnamed one,
//!   which stays on one server connection inside the transaction;
//! - the outbox relay polls every `poll_interval` instead of waiting on
//!   `LISTEN`, and logs once that it does;
//! - `bulk_load` and `repair_indexes` are refused ([`Error::Config`](reposmith_core::Error::Config)):
//!   they need a session of their own. Run them on a backend connected to
//!   PostgreSQL itself.
//!
//! Raw SQL gets none of this: on a connection from [`PgBackend::acquire`]
//! or [`PgBackend::pool`], run statements with parameters between `BEGIN`
//! and `COMMIT` (a single `sqlx::raw_sql` statement is safe alone), and set
//! what they need with `SET LOCAL`.
//!
//! The cost: a get-by-id is 4 round trips instead of 1 (BEGIN and the
//! settings; Parse and Describe; Bind and Execute; COMMIT: sqlx needs the
//! statement's description before it binds an unnamed statement). Measured
//! on one connection to a local server without a pooler, on a busy 2-core
//! machine (an unoptimized build; `pg_pooler.rs`'s cost test prints it):
//! roughly a third of Direct mode's rate, typically 1.4k–2.3k against
//! 4.7k–7.1k get-by-id/s. Through PgBouncer every round trip also pays the
//! extra hop: 0.9k–1.5k get-by-id/s.
//!
//! # TLS and least privilege
//!
//! [`PgConfig::validate`] (run by `from_env` and [`PgBackend::connect`])
//! refuses a URL that would go unencrypted to a host other than this
//! machine: no `sslmode` (sqlx's `prefer`), `disable`, `allow` or `prefer`
//! to anything but `localhost`, `127.0.0.0/8`, `::1` or a Unix socket is an
//! [`Error::Config`](reposmith_core::Error::Config) naming the URL (password
//! masked). Use `sslmode=verify-full` (with `sslrootcert=<CA file>` for a
//! private CA; it checks the certificate and the host name) or at least
//! `require`, with reposmith's `tls` feature; or allow plaintext on
//! purpose with [`PgConfig::allow_plaintext`] or
//! `REPOSMITH_ALLOW_PLAINTEXT=1`. The same holds for replica URLs and the
//! migration URL. Asking for TLS from a build without the `tls` feature is
//! an `Error::Config` naming the feature. The policy for all backends is in
//! [`reposmith_core::tls`].
//!
//! Run the application as a role that can read and write its tables but
//! not change the schema, and migrations as the owner: `DATABASE_URL` is
//! the application's, `REPOSMITH_MIGRATION_DATABASE_URL`
//! ([`PgConfig::migration_url`]) the owner's, which `reposmith-migrate`'s
//! CLI and `Connection::for_config` use. Nothing reposmith does on its own
//! (connecting, the health probe, repositories, units of work, the cache,
//! the outbox relay) runs DDL; [`PgBackend::create_tables`],
//! [`PgBackend::create_outbox_tables`], `bulk_load` (it drops and recreates
//! vector indexes) and `repair_indexes` do, when called. DDL the role may
//! not run is [`Error::PermissionDenied`](reposmith_core::Error::PermissionDenied)
//! (SQLSTATE 42501). The grants the application role needs:
//!
//! ```sql
//! GRANT USAGE ON SCHEMA app TO app_rw;
//! GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA app TO app_rw;
//! GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA app TO app_rw;
//! -- tables and sequences later migrations create, as the owner creates them:
//! ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app
//!     GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app_rw;
//! ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app
//!     GRANT USAGE, SELECT ON SEQUENCES TO app_rw;
//! ```
//!
//! In the default [`PoolerMode::Direct`], [`PgBackend::connect`] refuses a
//! pooler with [`Error::Config`](reposmith_core::Error::Config) naming
//! `PgConfig::pooler(PoolerMode::Transaction)` and
//! `REPOSMITH_PG_POOLER=transaction`. The signal: its first connection
//! sends one setting as a startup option, and a session of PostgreSQL's
//! own reports it back. PgBouncer refuses the connection instead
//! ("unsupported startup parameter: options"), or, with `options` in its
//! `ignore_startup_parameters`, drops the setting; both are recognised.
//! A session-mode PgBouncer is refused too (it refuses startup options the
//! same way); Transaction mode is correct there as well.

mod backend;
mod bind;
mod bulk;
pub mod bulk_load;
mod cache;
mod config;
mod copy;
mod ddl;
mod embed;
mod error;
mod executor;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod keyset;
pub mod outbox;
mod patch;
mod pool;
mod pooler;
mod query;
pub mod recall;
mod render;
pub mod replica;
mod repository;
mod retry;
mod search;
mod search_sql;
mod statements;

/// The SQL text reposmith sends for a few statements whose concurrent
/// behaviour the suite checks with PostgreSQL's `isolationtester`: its
/// specs copy the text, and a suite test compares the copy with these, so
/// a change here breaks that test instead of leaving the specs testing
/// stale SQL. Not a stable API.
#[doc(hidden)]
pub mod sql_text {
    use reposmith_core::Entity;

    use crate::statements::statements;

    /// `E`'s `update`: `UPDATE ... WHERE id = $ AND version = $ RETURNING ...`.
    pub fn update<E: Entity + 'static>() -> String {
        statements(
            std::any::TypeId::of::<E>(),
            E::SCHEMA,
            &reposmith_core::RowScope::of(E::SCHEMA),
        )
        .update
        .to_string()
    }

    /// `E`'s `upsert`: `INSERT ... ON CONFLICT (id) DO UPDATE ... RETURNING ...`.
    pub fn upsert<E: Entity + 'static>() -> String {
        statements(
            std::any::TypeId::of::<E>(),
            E::SCHEMA,
            &reposmith_core::RowScope::of(E::SCHEMA),
        )
        .upsert
        .to_string()
    }

    /// The outbox relay's claim of a batch of due rows (`FOR UPDATE SKIP LOCKED`).
    pub fn outbox_claim() -> &'static str {
        crate::outbox::relay::pass::SELECT_SQL
    }

    /// The outbox relay's per-destination lock for ordered destinations.
    pub fn outbox_destination_lock() -> &'static str {
        crate::outbox::relay::pass::LOCK_SQL
    }
}
mod store;
mod tenant;
mod tls;
mod unit;
mod validate;
mod vector;
mod write;

#[cfg(test)]
mod sql_tests;

pub use backend::PgBackend;
pub use bulk_load::{
    BuildProgress, BulkLoad, IndexOutcome, IndexRepair, IndexReport, LoadMode, LoadPhase,
    LoadProblem, LoadProgress, LoadReport, Rebuild, RepairAction,
};
pub use config::{DEFAULT_MAX_BIND_BYTES, MAX_BIND_BYTES_CEILING, PgConfig, PoolerMode};
pub use ddl::{
    TENANT_POLICY, TENANT_SETTING, drop_tenant_policy_statements, tenant_policy_condition,
    tenant_policy_sql, tenant_policy_statements,
};
pub use ddl::{
    column_type_sql, create_table_sql, foreign_key_clause, foreign_key_sql, full_text_column_sql,
    full_text_expression, index_opclass, index_predicate, index_sql, quote_ident, quote_literal,
    sql_type, table_name, vector_opclass,
};
pub use health::PgHealth;
pub use pool::PooledConnection;
pub use recall::{RecallConfig, RecallMonitor, RecallReport, TuneConfig};
pub use replica::{ReadStats, ReplicaConfig, ReplicaFallback, ReplicaStatus, Session, WalPosition};
pub use repository::PgRepository;
pub use unit::{IsolationLevel, PgUnitOfWork};

/// The driver, for applications that need it beside repositories.
pub use sqlx;
/// The sqlx pool type, for applications that need raw SQL beside repositories.
pub use sqlx::PgPool;
