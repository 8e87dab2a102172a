//! The quickstart's domain as a library, the way an application keeps its
//! entities in a crate of their own; `src/main.rs` is the service using them.

pub mod domain;
pub mod embedder;
pub mod jobs;
pub mod limits;
pub mod own_redis;
pub mod replicas;
pub mod service;
