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

mod backend;
mod bind;
mod bulk;
pub mod bulk_load;
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
mod query;
pub mod recall;
mod render;
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
pub use config::PgConfig;
pub use ddl::{
    column_type_sql, create_table_sql, full_text_column_sql, full_text_expression, index_opclass,
    index_sql, quote_ident, quote_literal, sql_type, table_name, vector_opclass,
};
pub use health::PgHealth;
pub use pool::PooledConnection;
pub use recall::{RecallConfig, RecallMonitor, RecallReport, TuneConfig};
pub use repository::PgRepository;
pub use unit::{IsolationLevel, PgUnitOfWork};

/// The driver, for applications that need it beside repositories.
pub use sqlx;
/// The sqlx pool type, for applications that need raw SQL beside repositories.
pub use sqlx::PgPool;
