#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod health;
mod store;

pub use config::Config;
pub use health::{Disabled, Health};
pub use reposmith_core::{Backend, ConnectionUrl, Error, Result};
pub use store::Store;

#[cfg(feature = "mongo")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
pub use reposmith_mongo::{MongoBackend, MongoCapabilities, MongoConfig, MongoHealth, mongodb};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use reposmith_postgres::{PgBackend, PgConfig, PgHealth, PgPool, sqlx};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use reposmith_redis::{RedisBackend, RedisConfig, RedisHealth, redis};

/// Reading settings from the environment (re-exported from the core).
pub mod config_source {
    pub use reposmith_core::config::{Env, parse_duration};
}

/// What most applications import: `use reposmith::prelude::*;`.
pub mod prelude {
    pub use crate::{Config, Error, Result, Store};
}
