//! MongoDB backend of reposmith: a driver client with deliberate defaults,
//! the server's capabilities probed at connect, and error mapping onto
//! [`reposmith_core::Error`].
//!
//! Production targets MongoDB 7+ and Atlas; tests run against SecantusDB, a
//! MongoDB wire-protocol server. Whatever differs between servers is decided
//! from [`MongoCapabilities`], never from the server's name.

mod backend;
mod capabilities;
mod config;
mod error;

pub use backend::{MongoBackend, MongoHealth};
pub use capabilities::MongoCapabilities;
pub use config::{DEFAULT_DATABASE, MongoConfig};

/// The driver, for applications that need it beside repositories.
pub use mongodb;
