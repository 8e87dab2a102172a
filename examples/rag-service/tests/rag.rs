//! The RAG example's integration tests, one binary: a module per area.

mod embedder;
