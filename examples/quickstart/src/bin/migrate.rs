//! The quickstart's migrations: `cargo xtask migrate <command>` runs this.
//! The template to copy: list your entities, point at your migrations
//! directory (relative to the workspace root, where xtask runs it).
//!
//! Its hints ("run `... generate <name>`") name the command that runs it:
//! `cargo xtask migrate` here (xtask says so through
//! `REPOSMITH_MIGRATE_PROGRAM`), the binary's own file name otherwise, or
//! what `.program(...)` says, e.g. `.program("cargo run --bin migrate --")`.

use reposmith::migrate::cli::Cli;
use reposmith_example_quickstart::domain;

fn main() -> std::process::ExitCode {
    let schemas = domain::schemas();
    Cli::new(&schemas, "migrations/quickstart").run(std::env::args().skip(1))
}
