//! `cargo xtask migrate <command>`: runs the application's migrate binary
//! (for this repository, the quickstart's `src/bin/migrate.rs`), which
//! links the entities and `reposmith-migrate`; xtask itself stays std-only.
//! Commands that talk to the database get the services' `DATABASE_URL`.

use std::path::Path;
use std::process::ExitCode;

use crate::error::Error;
use crate::{cmd, services, test};

/// The package and binary that hold the entities, unless `--package`/`--bin` say otherwise.
const PACKAGE: &str = "reposmith-example-quickstart";
const BIN: &str = "migrate";

/// Splits `[--package P] [--bin B]` off the arguments the binary receives.
fn split(args: &[&str]) -> Result<(String, String, Vec<String>), Error> {
    let (mut package, mut bin, mut rest) = (PACKAGE.to_owned(), BIN.to_owned(), Vec::new());
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let mut value = |what: &str| {
            words
                .next()
                .map(|v| (*v).to_owned())
                .ok_or_else(|| Error::msg(format!("{what} needs a value")))
        };
        match *word {
            "--package" | "-p" => package = value("--package")?,
            "--bin" => bin = value("--bin")?,
            other => rest.push(other.to_owned()),
        }
    }
    Ok((package, bin, rest))
}

/// Runs the migrate binary with `args`; its exit code is ours.
pub(crate) fn run(root: &Path, args: &[&str]) -> Result<ExitCode, Error> {
    let (package, bin, rest) = split(args)?;
    let offline = matches!(
        rest.first().map(String::as_str),
        None | Some("generate" | "help")
    );
    let vars = if offline {
        Vec::new()
    } else {
        services::up_for_child(root)?
    };
    let mut cargo_args = vec!["run", "--quiet", "-p", &package, "--bin", &bin, "--"];
    cargo_args.extend(rest.iter().map(String::as_str));
    let mut command = test::cargo(root, &vars, &cargo_args);
    let status = cmd::run_inherit(&mut command, test::step_timeout())?;
    Ok(ExitCode::from(cmd::exit_code(status)))
}
