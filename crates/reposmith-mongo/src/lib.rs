//! MongoDB backend of reposmith: a driver client with deliberate defaults,
//! the server's capabilities probed at connect, error mapping onto
//! [`reposmith_core::Error`], and [`MongoRepository`], the
//! [`Repository`](reposmith_core::Repository) of an entity on a collection.
//!
//! Production targets MongoDB 7+ and Atlas; tests run against SecantusDB, a
//! MongoDB wire-protocol server. Whatever differs between servers is decided
//! from [`MongoCapabilities`], never from the server's name.
//!
//! How values are stored (and `None` as an explicit BSON null) is described
//! in the `codec` module; how SQL's NULL semantics are kept in filters, in
//! `render`; ordering and keyset pages, in `keyset`; identity ids, in
//! [`COUNTERS`]'s module; all-or-nothing bulk inserts, in `bulk`.

mod backend;
mod bulk;
mod capabilities;
mod codec;
mod config;
mod counter;
mod error;
mod indexes;
mod json_filter;
mod keyset;
mod query;
mod render;
mod repository;
mod write;

pub use backend::{MongoBackend, MongoHealth};
pub use capabilities::MongoCapabilities;
pub use config::{DEFAULT_DATABASE, MongoConfig};
pub use counter::COUNTERS;
pub use repository::MongoRepository;

/// The driver, for applications that need it beside repositories.
pub use mongodb;
