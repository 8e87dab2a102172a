//! Backend-free building blocks of reposmith.
//!
//! This crate knows no database driver. It holds what every backend and the
//! facade share: the [`Error`] contract, the [`Backend`] names, the
//! [`ConnectionUrl`] that keeps passwords out of every log line, and the small
//! parsers configuration needs. Later the entity schema, the repository traits
//! and the filter AST live here too.

pub mod backend;
pub mod config;
pub mod error;
pub mod url;

pub use backend::Backend;
pub use error::{Error, Result};
pub use url::ConnectionUrl;
