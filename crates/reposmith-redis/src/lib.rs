//! Redis backend of reposmith: a reconnecting connection manager whose every
//! wait is bounded, with error mapping onto [`reposmith_core::Error`].
//!
//! Redis is optional everywhere in reposmith: callers treat
//! [`Error::is_unreachable`](reposmith_core::Error::is_unreachable) errors from
//! here as "serve from the database", never as a failed request. Redis is
//! never the system of record: [`RedisBackend`] hands out its connection
//! ([`RedisBackend::connection`]) for the application's own commands, maps
//! their errors ([`RedisBackend::map_error`]) and reports health
//! ([`RedisBackend::ping`]). A [`RedisConfig::cluster`] configuration talks
//! to a Redis Cluster through the same [`RedisConnection`] type.
//!
//! [`cache`] is the Redis side of the repository cache: copies of rows and
//! query results, never stale after a commit
//! ([`RedisCacheStore`](cache::RedisCacheStore), [`RedisBackend::cache`]).
//!
//! [`queue`] is a task queue on Redis (sorted sets and Lua scripts, leases
//! with fencing tokens, dead letters) and the outbox relay's destination
//! for jobs.

mod backend;
pub mod cache;
mod cluster;
mod config;
mod connection;
mod error;
pub mod limit;
mod lua;
pub mod prefix;
pub mod queue;
mod reply;
mod tls;

pub use backend::{RedisBackend, RedisHealth};
pub use config::RedisConfig;
pub use connection::RedisConnection;

/// The driver, for applications that need it beside reposmith.
pub use redis;
