//! The quickstart's migrations: `cargo xtask migrate <command>` runs this.
//! The template to copy: list your entities, point at your migrations
//! directory (relative to the workspace root, where xtask runs it).

use reposmith::migrate::{Schemas, cli};
use reposmith_example_quickstart::domain::{Chunk, Document};

fn main() -> std::process::ExitCode {
    let schemas = Schemas::new().add::<Document>().add::<Chunk>();
    cli::run(&schemas, "migrations/quickstart", std::env::args().skip(1))
}
