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
mod health;
mod keyset;
pub mod outbox;
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
mod store;
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
pub use config::{PgConfig, PoolerMode};
pub use ddl::{
    column_type_sql, create_table_sql, full_text_column_sql, full_text_expression, index_opclass,
    index_sql, quote_ident, quote_literal, sql_type, table_name, vector_opclass,
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
