//! The RAG service's integration tests, one binary: each module is a file
//! in `tests/rag/` (a test crate's root looks for modules beside itself,
//! hence the paths). The service's tests start it against a store of their
//! own (`#[reposmith::test]`); the embedder's load the real model.

#[path = "rag/ask.rs"]
mod ask;
#[path = "rag/bad_input.rs"]
mod bad_input;
#[path = "rag/browser.rs"]
mod browser;
#[path = "rag/embedder.rs"]
mod embedder;
#[path = "rag/end_to_end.rs"]
mod end_to_end;
#[path = "rag/external.rs"]
mod external;
#[path = "rag/ingest.rs"]
mod ingest;
#[path = "rag/limits.rs"]
mod limits;
#[path = "rag/migrations.rs"]
mod migrations;
#[path = "rag/real_model.rs"]
mod real_model;
#[path = "rag/schemathesis.rs"]
mod schemathesis;
#[path = "rag/support.rs"]
mod support;
