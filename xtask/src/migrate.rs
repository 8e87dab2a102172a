//! `cargo xtask migrate <command>`: runs the application's migrate binary
//! (for this repository, the quickstart's `src/bin/migrate.rs`), which
//! links the entities and `reposmith-migrate`; xtask itself stays std-only.
//! Commands that talk to the database get the services' `DATABASE_URL`, and
//! every command gets [`PROGRAM_ENV`], so the binary's hints say `cargo
//! xtask migrate ...` (what this repository's users type) rather than its
//! own name.

use std::path::Path;
use std::process::ExitCode;

use crate::error::Error;
use crate::{cmd, services, test};

/// The package and binary that hold the entities, unless `--package`/`--bin` say otherwise.
const PACKAGE: &str = "reposmith-example-quickstart";
const BIN: &str = "migrate";

/// `reposmith_migrate::cli::PROGRAM_ENV` (xtask does not link that crate):
/// the command the binary's hints tell users to run.
const PROGRAM_ENV: &str = "REPOSMITH_MIGRATE_PROGRAM";

/// How users run the binary through xtask, with the `--package`/`--bin`
/// they chose when not the defaults.
fn spelling(package: &str, bin: &str) -> String {
    let mut program = "cargo xtask migrate".to_owned();
    if package != PACKAGE {
        program.push_str(&format!(" --package {package}"));
    }
    if bin != BIN {
        program.push_str(&format!(" --bin {bin}"));
    }
    program
}

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
    let mut vars = if offline {
        Vec::new()
    } else {
        services::up_for_child(root)?
    };
    vars.push((PROGRAM_ENV.to_owned(), spelling(&package, &bin)));
    let mut cargo_args = vec!["run", "--quiet", "-p", &package, "--bin", &bin, "--"];
    cargo_args.extend(rest.iter().map(String::as_str));
    let mut command = test::cargo(root, &vars, &cargo_args);
    let status = cmd::run_inherit(&mut command, test::step_timeout())?;
    Ok(ExitCode::from(cmd::exit_code(status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hints repeat the `--package`/`--bin` a user chose, and only those.
    #[test]
    fn hints_spell_the_xtask_command() {
        assert_eq!(spelling(PACKAGE, BIN), "cargo xtask migrate");
        assert_eq!(
            spelling("app", "db"),
            "cargo xtask migrate --package app --bin db"
        );
    }
}
