//! `cargo xtask reliability [--heavy]`: the reliability tests of the suite,
//! then a scoreboard, one row per test of the reliability list (load,
//! faults, cancellation, crash consistency, isolation, bad input,
//! migrations, security): passed or failed with the figure its test
//! printed, or "not run here" with the reason.
//!
//! `cargo xtask test` prints the same board from its own run's JUnit
//! report, so CI shows it without running anything twice.

mod junit;
mod rows;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::error::Error;
use crate::{cmd, services, test};
use junit::Case;
use rows::{Check, ROWS, Row};

/// Where nextest's default profile writes its JUnit report (`.config/nextest.toml`):
/// under nextest's store, `target/nextest` of the workspace whatever
/// `CARGO_TARGET_DIR` says.
pub(crate) fn report_path(root: &Path) -> PathBuf {
    profile_report(root, "default")
}

fn profile_report(root: &Path, profile: &str) -> PathBuf {
    root.join("target/nextest").join(profile).join("junit.xml")
}

/// The pool-of-one run: the suite's tests again, with every PostgreSQL pool
/// they make holding one connection (`reposmith_tests::pool_of_one`), so a
/// library path that needs a second connection while it holds one fails
/// with a pool timeout instead of passing.
pub(crate) mod pool_of_one {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use crate::test;

    /// Its nextest profile (`.config/nextest.toml`), and so its report's folder.
    pub(crate) const PROFILE: &str = "pool-of-one";

    /// The sections CI runs so: the ones whose library paths hold a
    /// connection while they work (units of work, batches, streams, pages,
    /// searches, cache fills, the outbox relay, bulk loads), less the
    /// recall measurements, which load 20,000 vectors on one connection
    /// either way; about 100 s of a busy machine. Not the migrations (their
    /// tests size sqlx pools of their own) nor the cancellation sweep
    /// (already on a pool of one). `--heavy` runs the whole suite.
    const SECTIONS: &str = "(test(/^pg_repository::/) | test(/^one_api::/) \
        | test(/^pg_search::/) | test(/^cache::pg::/) | test(/^outbox::/) \
        | test(/^pg_bulk_load::/)) & not test(/recall/)";

    /// The integration suite's binary.
    const SUITE: &str = "binary_id(reposmith-tests::suite)";

    /// Its JUnit report.
    pub(crate) fn report(root: &Path) -> PathBuf {
        super::profile_report(root, PROFILE)
    }

    /// The nextest command: the CI sections, or (`whole`) the whole suite.
    pub(crate) fn command(root: &Path, vars: &[(String, String)], whole: bool) -> Command {
        // `--workspace` and a filter, not `-p reposmith-tests`: the suite's
        // own package selection resolves features differently and rebuilt
        // sqlx, the MongoDB driver and everything above them (minutes in CI).
        let filter = match whole {
            true => SUITE.to_owned(),
            false => format!("{SUITE} & ({SECTIONS})"),
        };
        let args = [
            "nextest",
            "run",
            "--workspace",
            "--profile",
            PROFILE,
            "-E",
            &filter,
        ];
        let mut command = test::cargo(root, vars, &args);
        // The variable the suite's own pools follow, and the one the
        // library's `Config::from_env` reads for the tests that use it.
        command.env("REPOSMITH_TEST_POOL_OF_ONE", "1");
        command.env("REPOSMITH_PG_MAX_CONNECTIONS", "1");
        command
    }
}

/// Services up, the rows' tests (heavy variants with `--heavy`), the board.
pub(crate) fn run(root: &Path, args: &[&str]) -> Result<ExitCode, Error> {
    let heavy = match args {
        [] => false,
        ["--heavy"] => true,
        _ => return Err(Error::msg("usage: cargo xtask reliability [--heavy]")),
    };
    let mut vars = services::up_for_child(root)?;
    let extras = services::extras_for_child(root, services::Extras::ALL)?;
    vars.extend(extras.vars);
    if heavy {
        vars.push(("REPOSMITH_HEAVY".to_owned(), "1".to_owned()));
    }
    // Reports left by an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(report_path(root));
    let _ = std::fs::remove_file(pool_of_one::report(root));
    let filter = filter();
    // `--workspace` and binary filters, not `-p` selections: those resolve
    // features differently and rebuilt the whole test tree (minutes) where
    // `cargo xtask test` had just built it.
    let args = [
        "nextest",
        "run",
        "--workspace",
        "--no-fail-fast",
        "-E",
        &filter,
    ];
    let mut nextest = test::cargo(root, &vars, &args);
    println!("\n==> {}", cmd::describe(&nextest));
    let outcome = cmd::run_inherit(&mut nextest, test::step_timeout()).and_then(|_| {
        let mut pool_of_one = pool_of_one::command(root, &vars, heavy);
        println!("\n==> {}", cmd::describe(&pool_of_one));
        cmd::run_inherit(&mut pool_of_one, test::step_timeout())
    });
    if !extras.created.is_empty() {
        services::extras_down(root, extras.created)?;
    }
    outcome?;
    Ok(ExitCode::from(print_board(root, true)?))
}

/// Every test the rows name.
fn row_tests() -> impl Iterator<Item = &'static str> {
    ROWS.iter()
        .filter_map(|row| match row.check {
            Check::Tests(tests) => Some(tests),
            _ => None,
        })
        .flatten()
        .copied()
}

/// A row's test as (binary, `module::test`): `BINARY_ID module::test`, or
/// the suite's `module::test`.
fn split(test: &str) -> (&str, &str) {
    test.split_once(' ').unwrap_or((SUITE, test))
}

/// The suite's binary id, as nextest names it.
const SUITE: &str = "reposmith-tests::suite";

/// A nextest filter selecting every row's tests.
fn filter() -> String {
    row_tests()
        .map(|test| match split(test) {
            (SUITE, name) => format!("(binary_id(reposmith-tests::suite) & test(={name}))"),
            (binary, name) => format!("(binary_id({binary}) & test(={name}))"),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Prints the board from the last JUnit report; 1 when a row failed (and,
/// `strict`, when a row's test did not run: renamed, or never built).
pub(crate) fn print_board(root: &Path, strict: bool) -> Result<u8, Error> {
    let path = report_path(root);
    let xml = std::fs::read_to_string(&path)
        .map_err(|e| Error::msg(format!("cannot read {}: {e}", path.display())))?;
    let cases = junit::cases(&xml);
    // Absent when the run stopped before it, or ran a package selection.
    let pool_of_one = std::fs::read_to_string(pool_of_one::report(root))
        .ok()
        .map(|xml| junit::cases(&xml));
    println!("\n==> reliability scoreboard (from {})", path.display());
    let mut failed = 0;
    for row in ROWS {
        let (verdict, figure) = match row.check {
            Check::PoolOfOne => judge_pool_of_one(pool_of_one.as_deref()),
            _ => judge(row, &cases),
        };
        failed += u8::from(verdict == "FAIL" || (strict && verdict == "not in run"));
        println!("{:<4} {:<13} {}", row.id, verdict, row.claim);
        if !figure.is_empty() {
            println!("{:<18} {figure}", "");
        }
    }
    Ok(u8::from(failed > 0))
}

/// A row's verdict and figure from the report's cases.
fn judge(row: &Row, cases: &[Case]) -> (&'static str, String) {
    let tests = match row.check {
        Check::NotRunHere(why) => return ("not run here", why.to_owned()),
        Check::Tests(tests) => tests,
        Check::PoolOfOne => unreachable!("judged by judge_pool_of_one"),
    };
    let found: Vec<&Case> = tests
        .iter()
        .filter_map(|test| {
            let (binary, name) = split(test);
            cases
                .iter()
                .find(|case| case.name == name && case.binary == binary)
        })
        .collect();
    if found.len() < tests.len() {
        return (
            "not in run",
            format!("{} of {} tests ran", found.len(), tests.len()),
        );
    }
    let skipped = found.iter().any(|case| {
        case.output
            .lines()
            .any(|line| line.starts_with("not run here"))
    });
    let verdict = match (found.iter().all(|case| case.passed), skipped) {
        (false, _) => "FAIL",
        // A test that returned early where it cannot run proves nothing.
        (true, true) => "not run here",
        (true, false) => "pass",
    };
    let figures: Vec<String> = found
        .iter()
        .filter_map(|case| figure(&case.output))
        .collect();
    (verdict, figures.join("; "))
}

/// The pool-of-one row: every test of that run passed.
fn judge_pool_of_one(cases: Option<&[Case]>) -> (&'static str, String) {
    let Some(cases) = cases.filter(|cases| !cases.is_empty()) else {
        return ("not in run", "no pool-of-one report".to_owned());
    };
    let failed: Vec<&str> = cases
        .iter()
        .filter(|case| !case.passed)
        .map(|case| case.name.as_str())
        .collect();
    let figure = format!(
        "{} of {} tests passed with one connection per pool",
        cases.len() - failed.len(),
        cases.len()
    );
    match failed.as_slice() {
        [] => ("pass", figure),
        _ => ("FAIL", format!("{figure}; failed: {}", failed.join(", "))),
    }
}

/// The last line a test printed that is its own (not the harness's), cut short.
fn figure(output: &str) -> Option<String> {
    let harness = |line: &&str| {
        ["running ", "test ", "thread ", "note:"]
            .iter()
            .any(|prefix| line.starts_with(prefix))
    };
    let line = output
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !harness(line))?;
    let mut text: String = line.chars().take(160).collect();
    if text.len() < line.len() {
        text.push('…');
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_may_name_tests_of_other_binaries() {
        assert_eq!(split("faults::a"), (SUITE, "faults::a"));
        assert_eq!(
            split("reposmith-macros never_panics::x"),
            ("reposmith-macros", "never_panics::x")
        );
        let filter = filter();
        assert!(filter.contains(
            "(binary_id(reposmith-tests::suite) & test(=fuzz_corpus::cursor_decode_corpus_replays_clean))"
        ));
        assert!(filter.contains(
            "(binary_id(reposmith-macros) & test(=never_panics::db_enum_derive_returns_items_for_arbitrary_attributes))"
        ));
    }

    #[test]
    fn a_case_counts_only_for_the_binary_its_row_names() {
        let case = |binary: &str, name: &str| Case {
            name: name.to_owned(),
            binary: binary.to_owned(),
            passed: true,
            output: "12 cases, no panic".to_owned(),
        };
        let row = Row {
            id: "T1",
            claim: "",
            check: Check::Tests(&["m::t", "reposmith-macros never_panics::p"]),
        };
        let right = [
            case(SUITE, "m::t"),
            case("reposmith-macros", "never_panics::p"),
        ];
        assert_eq!(judge(&row, &right).0, "pass");
        let wrong = [case(SUITE, "m::t"), case(SUITE, "never_panics::p")];
        assert_eq!(judge(&row, &wrong).0, "not in run");
    }
}
