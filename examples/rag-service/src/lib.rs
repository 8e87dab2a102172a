//! A RAG service on reposmith, the template to copy: documents in
//! PostgreSQL, chunked and embedded by queue workers with a sentence
//! embedding model that runs in-process, searched by vector, full text or
//! both; conversations and request traces in MongoDB; per-key limits and a
//! search cache in Redis. `src/main.rs` runs it.
//!
//! - [`domain`]: the stored structs; [`migrations`] applies their migrations.
//! - [`jobs`]: chunking and embedding, born with their writes (the outbox).
//! - [`api`]: the routes, the request layer, the OpenAPI document.
//! - [`app`]: [`app::Service`] starts the workers and serves the routes.
//! - [`answer`]: the [`answer::Generator`] an application plugs its LLM into.
//! - [`embed`]: the sentence embedding model; [`corpus`] and [`eval`]: the
//!   PostgreSQL manual as a labelled retrieval benchmark.
//! - [`cli`]: what the binaries share around their work (allocator,
//!   runtime, exit status).

pub mod answer;
pub mod api;
pub mod app;
pub mod chunker;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod domain;
pub mod embed;
pub mod eval;
pub mod jobs;
pub mod migrations;
