//! The RAG example's integration tests, one binary: a module per area,
//! each in `tests/rag/` (a test crate's root looks for modules beside
//! itself, hence the paths).

#[path = "rag/embedder.rs"]
mod embedder;
