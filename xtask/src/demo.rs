//! `cargo xtask demo`: the services, then `examples/quickstart` against them.

use std::path::Path;
use std::process::ExitCode;

use crate::error::Error;
use crate::{cmd, services, test};

/// Brings the services up (and the streaming replica, whose step the demo
/// shows; left running like the others) and runs the example with their
/// URLs in its environment; its exit code is ours.
pub(crate) fn run(root: &Path) -> Result<ExitCode, Error> {
    let mut vars = services::up_for_child(root)?;
    vars.extend(replica_vars(root)?);
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

/// `REPOSMITH_DEMO_REPLICA_URL` for the quickstart's replica step, when the
/// replica can run (not beside a user's own PostgreSQL).
fn replica_vars(root: &Path) -> Result<Vec<(String, String)>, Error> {
    let wanted = services::Extras {
        replica: true,
        ..services::Extras::default()
    };
    let extras = services::extras_for_child(root, wanted)?;
    Ok(extras
        .vars
        .into_iter()
        .filter(|(name, _)| name == "REPOSMITH_TEST_PG_REPLICA_URL")
        .map(|(_, url)| ("REPOSMITH_DEMO_REPLICA_URL".to_owned(), url))
        .collect())
}
