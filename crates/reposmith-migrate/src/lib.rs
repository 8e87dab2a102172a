#![doc = include_str!("../README.md")]

pub mod apply;
pub mod check;
pub mod cli;
pub mod diff;
mod error;
pub mod files;
mod generate;
pub mod model;
#[cfg(feature = "mongo")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
pub mod mongo;
mod schemas;
pub mod types;

pub use apply::{Connection, Status, apply, revert, status};
pub use check::drift;
pub use diff::{Options, Plan, Step, plan};
pub use error::{Error, Result};
pub use generate::{Generated, generate, is_stale};
pub use model::Snapshot;
pub use schemas::Schemas;
