//! The RAG service's integration tests, one binary: each module starts the
//! service against a store of its own (`#[reposmith::test]`).

mod bad_input;
mod end_to_end;
mod ingest;
mod limits;
mod migrations;
mod support;
