//! A RAG service on reposmith, the template to copy: documents in
//! PostgreSQL, chunked and embedded by queue workers with a sentence
//! embedding model that runs in-process, searched by vector, full text or
//! both; conversations and request traces in MongoDB; per-key limits and a
//! search cache in Redis. `src/main.rs` runs it.

pub mod corpus;
pub mod embed;
pub mod eval;
