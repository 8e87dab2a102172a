//! `cargo xtask bench [-- ARGS]`: the services, then the release-mode
//! benchmark of reposmith against raw sqlx (`bench/`), ARGS passed to it;
//! `cargo xtask bench replicas` also starts the streaming replica.

use std::path::Path;
use std::process::ExitCode;

use crate::error::Error;
use crate::{cmd, services, test};

/// The benchmark's arguments: everything after `--` (a bare list is taken
/// as is too, so `cargo xtask bench --quick` works).
pub(crate) fn args<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    match rest.split_first() {
        Some((&"--", tail)) => tail.to_vec(),
        _ => rest.to_vec(),
    }
}

/// Brings the services up and runs the benchmark, release build, with their
/// URLs in its environment; its exit code is ours. Every area gets them: the
/// `queue` area runs its Redis contenders on a redis-server of its own, but
/// its outbox contenders need the Postgres service (`DATABASE_URL`). The
/// `replicas` area also gets the streaming replica (see [`replica_vars`]).
pub(crate) fn run(root: &Path, extra: &[&str]) -> Result<ExitCode, Error> {
    let mut vars = services::up_for_child(root)?;
    if extra.contains(&"replicas") {
        vars.extend(replica_vars(root)?);
    }
    // Release: a debug build measures sqlx's and reposmith's unoptimised
    // code, not what users ship.
    let head = ["run", "--release", "--quiet", "-p", "reposmith-bench", "--"];
    let all: Vec<&str> = head.iter().copied().chain(extra.iter().copied()).collect();
    let mut bench = test::cargo(root, &vars, &all);
    println!("\n==> {}", cmd::describe(&bench));
    let status = cmd::run_inherit(&mut bench, test::step_timeout())?;
    Ok(ExitCode::from(cmd::exit_code(status)))
}

/// Starts the streaming replica of the managed PostgreSQL (left running,
/// like the other services; `cargo xtask services down` stops it) and
/// returns its variables: `REPOSMITH_TEST_PG_REPLICA_URL`, or beside the
/// user's own PostgreSQL `REPOSMITH_TEST_PG_EXTRAS_SKIPPED`, whose reason
/// the bench prints.
fn replica_vars(root: &Path) -> Result<Vec<(String, String)>, Error> {
    let wanted = services::Extras {
        replica: true,
        ..services::Extras::default()
    };
    Ok(services::extras_for_child(root, wanted)?.vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_after_the_separator_go_to_the_bench() {
        assert_eq!(
            args(&["--", "--quick", "--rounds", "3"]),
            ["--quick", "--rounds", "3"]
        );
        assert_eq!(args(&["--quick"]), ["--quick"]);
        assert!(args(&[]).is_empty());
    }
}
