//! The RAG service's migrations: `cargo run -p reposmith-example-rag --bin
//! migrate -- <command>` from the workspace root (`generate <name>`,
//! `apply`, `status`, `revert`, `check`). The service applies them itself
//! when it starts; this binary writes them and checks for drift.

use reposmith::migrate::cli::Cli;
use reposmith_example_rag::domain;

fn main() -> std::process::ExitCode {
    let schemas = domain::schemas();
    Cli::new(&schemas, "migrations/rag")
        .program("cargo run -p reposmith-example-rag --bin rag-migrate --")
        .run(std::env::args().skip(1))
}
