//! PostgreSQL backend of reposmith: a sqlx pool with deliberate defaults,
//! error mapping onto [`reposmith_core::Error`], and a health probe that
//! reports the server and pgvector versions.
//!
//! Repositories, unit of work and vector search build on [`PgBackend`] in
//! later layers; this crate is where every Postgres connection comes from.

mod backend;
mod config;
mod error;
mod health;

pub use backend::PgBackend;
pub use config::PgConfig;
pub use health::PgHealth;

/// The driver, for applications that need it beside repositories.
pub use sqlx;
/// The sqlx pool type, for applications that need raw SQL beside repositories.
pub use sqlx::PgPool;
