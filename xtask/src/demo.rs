//! `cargo xtask demo`: the services, then `examples/quickstart` against them.

use std::path::Path;
use std::process::ExitCode;

use crate::error::Error;
use crate::{cmd, services, test};

/// Brings the services up and runs the example with their URLs in its
/// environment; its exit code is ours.
pub(crate) fn run(root: &Path) -> Result<ExitCode, Error> {
    let vars = services::up_for_child(root)?;
    let mut example = test::cargo(
        root,
        &vars,
        &[
            "run",
            "--quiet",
            "-p",
            "reposmith-example-quickstart",
            "--bin",
            "quickstart",
        ],
    );
    println!("\n==> {}", cmd::describe(&example));
    let status = cmd::run_inherit(&mut example, test::step_timeout())?;
    Ok(ExitCode::from(cmd::exit_code(status)))
}
