//! `cargo xtask test`: tidy, services up (with every extra: the Redis
//! Cluster, whose failover test kills a master, the PostgreSQL replica and
//! PgBouncer) and the RAG example's test tools (Chromium, npm packages,
//! schemathesis: see [`crate::test_tools`]), lints, rustdoc, the demo,
//! doctests, the test suite, its PostgreSQL sections again with a pool of
//! one connection, each as a timed step that stops the run at its first
//! failure. The lints and rustdoc need no server, so the services and the
//! tools are readied beside them, on threads of their own (see [`run`]). An extra the run created is stopped at its
//! end; one that was running is left running (a killed cluster node is
//! restarted by the next `services up --cluster` or `cargo xtask test`).

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::{cmd, services, test_tools, tidy};

/// What `test` was asked to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    lint: bool,
    extra: Vec<String>,
}

impl Options {
    /// Parses `[--no-lint] [-- ARGS...]`.
    pub(crate) fn parse(args: &[&str]) -> Result<Self, Error> {
        let mut options = Self {
            lint: true,
            extra: Vec::new(),
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match *arg {
                "--no-lint" => options.lint = false,
                "--" => options.extra = rest.by_ref().map(|arg| (*arg).to_owned()).collect(),
                other => {
                    return Err(Error::msg(format!(
                        "unknown `test` option {other}: use [--no-lint] [-- ARGS]"
                    )));
                }
            }
        }
        Ok(options)
    }
}

/// A `cargo` command run from the workspace root with the services' variables.
/// The `cargo` that runs xtask is in `CARGO`; use it so a pinned toolchain
/// stays pinned.
pub(crate) fn cargo(root: &Path, vars: &[(String, String)], args: &[&str]) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(root)
        .envs(vars.iter().map(|(k, v)| (k, v)));
    command
}

/// The longest one step may take: a cold build of the workspace on two cores
/// plus the suite fits well inside an hour; `XTASK_STEP_TIMEOUT_SECS` changes it.
pub(crate) fn step_timeout() -> Duration {
    let secs = std::env::var("XTASK_STEP_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(3600))
}

/// Runs the whole sequence; the exit code is the first failing step's.
///
/// `services up` runs on a thread of its own while the lint steps run: on a
/// fresh clone it installs the Python venv, runs initdb and waits for five
/// servers and a cluster to answer (15 s on an idle 2-core machine, 27 s on
/// a busy one; the replica's base backup and PgBouncer add about a second,
/// installing PgBouncer's package a few more once), and the lints need none
/// of it. Its few lines of output may fall between the lints'; its time is
/// listed as overlapping them. A lint failure still waits for the
/// services, so that the extras this run created are stopped; a services
/// failure is reported once the lints end.
pub(crate) fn run(root: &Path, options: &Options) -> Result<ExitCode, Error> {
    let mut timings = Vec::new();
    // First and in-process: it takes well under a second and needs no
    // server, so a stray marker or broken link fails before anything starts.
    header("tidy");
    let started = Instant::now();
    let tidy = tidy::report(root)?;
    timings.push(("tidy".to_owned(), started.elapsed()));
    if !tidy {
        summary(&timings, 1);
        return Ok(ExitCode::FAILURE);
    }
    let lints = lint_steps(root, options);
    header(match lints.is_empty() {
        true => "services up",
        false => "services up (beside the lint steps)",
    });
    let mut lint_timings = Vec::new();
    let (linted, (up, up_elapsed), (tools, tools_elapsed)) = std::thread::scope(|scope| {
        // Chromium, the browser test's npm packages and schemathesis: each
        // mostly waits on a registry, so beside the lints too.
        let tools = scope.spawn(|| {
            let started = Instant::now();
            (test_tools::ensure(root), started.elapsed())
        });
        let services = scope.spawn(|| {
            let started = Instant::now();
            let up = services::up_for_child(root).and_then(|mut vars| {
                let extras = services::extras_for_child(root, services::Extras::ALL)?;
                vars.extend(extras.vars);
                Ok((vars, extras.created))
            });
            (up, started.elapsed())
        });
        let linted = run_steps(lints, &mut lint_timings);
        let services = services
            .join()
            .unwrap_or_else(|_| (Err(Error::msg("services up panicked")), Duration::ZERO));
        let tools = tools
            .join()
            .unwrap_or_else(|_| (Err(Error::msg("test-tools panicked")), Duration::ZERO));
        (linted, services, tools)
    });
    let title = match lint_timings.is_empty() {
        true => "services up",
        false => "services up (overlapping the lint steps)",
    };
    timings.push((title.to_owned(), up_elapsed));
    let tools_title = match lint_timings.is_empty() {
        true => "test-tools",
        false => "test-tools (overlapping the lint steps)",
    };
    timings.push((tools_title.to_owned(), tools_elapsed));
    timings.extend(lint_timings);
    let (vars, created) = up?;
    // Reports left by an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(crate::reliability::report_path(root));
    let _ = std::fs::remove_file(crate::reliability::pool_of_one::report(root));
    // A tools failure still stops the extras this run created, below.
    let code = match (linted, tools) {
        (Ok(0), Ok(())) => run_steps(steps(root, &vars, options), &mut timings),
        (Ok(0), Err(err)) => Err(err),
        (other, _) => other,
    };
    if crate::reliability::report_path(root).exists() {
        // The board repeats the suite's verdicts per promise; it adds no failure of its own.
        let _ = crate::reliability::print_board(root, false);
    }
    if !created.is_empty() {
        header("extras down (this run started them)");
        services::extras_down(root, created)?;
    }
    let code = code?;
    summary(&timings, code);
    Ok(ExitCode::from(code))
}

/// Runs the steps until one fails; its exit code, or 0.
fn run_steps(
    steps: Vec<(String, Command)>,
    timings: &mut Vec<(String, Duration)>,
) -> Result<u8, Error> {
    for (title, command) in steps {
        header(&title);
        let start = Instant::now();
        let result = run_step(command);
        timings.push((title, start.elapsed()));
        let code = result?;
        if code != 0 {
            return Ok(code);
        }
    }
    Ok(0)
}

fn run_step(mut command: Command) -> Result<u8, Error> {
    let status = cmd::run_inherit(&mut command, step_timeout())?;
    Ok(cmd::exit_code(status))
}

/// The steps that need no server, in order: formatting, clippy, rustdoc;
/// none with `--no-lint`.
fn lint_steps(root: &Path, options: &Options) -> Vec<(String, Command)> {
    if !options.lint {
        return Vec::new();
    }
    let clippy = ["clippy", "--workspace", "--all-targets", "--all-features"];
    let clippy = [&clippy[..], &["--", "-D", "warnings"]].concat();
    let mut doc = cargo(root, &[], &DOC);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    vec![
        (
            "cargo fmt --all --check".to_owned(),
            cargo(root, &[], &["fmt", "--all", "--check"]),
        ),
        (
            "cargo clippy (warnings are errors)".to_owned(),
            cargo(root, &[], &clippy),
        ),
        // After clippy, whose dependency metadata it reuses.
        (DOC_TITLE.to_owned(), doc),
    ]
}

/// The steps after `services up` and the lints, in order.
fn steps(root: &Path, vars: &[(String, String)], options: &Options) -> Vec<(String, Command)> {
    let mut steps: Vec<(&str, Vec<&str>)> = Vec::new();
    // `--workspace` beats `-p`, so a package selection replaces it.
    let whole = package_args(&options.extra).is_empty();
    // nextest does not run doctests, so they get their own step, before the
    // suite so that the run ends on the suite's summary line. Not for a
    // package selection: `--doc` fails on a package without a library.
    if whole {
        // The README's other command: a demo that no longer runs fails CI too.
        // Built here, run by the step after it (see `DEMO_BUILD`).
        steps.push((DEMO_BUILD, DEMO_BUILD_ARGS.to_vec()));
    }
    match whole {
        true => steps.push(("cargo test --doc", vec!["test", "--workspace", "--doc"])),
        false => println!("note: doctests run only without -p/--package"),
    }
    let nextest = has_nextest(root);
    let (title, runner) = match nextest {
        true => ("cargo nextest run", vec!["nextest", "run"]),
        false => ("cargo test (cargo-nextest not installed)", vec!["test"]),
    };
    let scope = runner.into_iter().chain(whole.then_some("--workspace"));
    steps.push((
        title,
        scope
            .chain(options.extra.iter().map(String::as_str))
            .collect(),
    ));
    let mut commands: Vec<(String, Command)> = steps
        .into_iter()
        .map(|(title, args)| (title.to_owned(), cargo(root, vars, &args)))
        .collect();
    if let Some(built) = commands.iter().position(|(title, _)| title == DEMO_BUILD) {
        commands.insert(
            built + 1,
            (
                "the demo (examples/quickstart)".to_owned(),
                demo(root, vars),
            ),
        );
    }
    // After the suite: its PostgreSQL sections again with one connection
    // per pool (the scoreboard's L2; it needs nextest's profiles).
    if whole && nextest {
        commands.push((
            "the PostgreSQL sections with a pool of one".to_owned(),
            crate::reliability::pool_of_one::command(root, vars, false),
        ));
    }
    commands
}

const DEMO_BUILD: &str = "the demo: build";

/// The demo's binary, built with the whole workspace selected and
/// `--examples` (there are none; the flag turns on dev-dependencies as the
/// test steps do), so every dependency resolves to the features the
/// doctests and the suite use and is compiled once for all three. `cargo run
/// -p reposmith-example-quickstart` resolved the example's features alone:
/// per cargo's unit graph, 34 units (sqlx, mongodb, bson, serde, chrono...)
/// that the later steps then compiled again; this selection adds one, the
/// binary.
const DEMO_BUILD_ARGS: [&str; 6] = [
    "build",
    "--quiet",
    "--workspace",
    "--examples",
    "--bin",
    "quickstart",
];

/// Runs the binary `DEMO_BUILD_ARGS` built, from the root with the services'
/// variables, as `cargo run` would (`cargo run` cannot select the workspace).
fn demo(root: &Path, vars: &[(String, String)]) -> Command {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    let binary = target
        .join("debug")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    let mut command = Command::new(binary);
    command
        .current_dir(root)
        .envs(vars.iter().map(|(k, v)| (k, v)));
    // The replica the suite's extras started also serves the demo's step 15.
    if let Some((_, url)) = vars
        .iter()
        .find(|(k, _)| k == "REPOSMITH_TEST_PG_REPLICA_URL")
    {
        command.env("REPOSMITH_DEMO_REPLICA_URL", url);
    }
    command
}

const DOC_TITLE: &str = "cargo doc (rustdoc warnings are errors)";

/// The API docs of every library, as docs.rs would build them (libraries
/// only, all features), with `RUSTDOCFLAGS=-D warnings`: a broken intra-doc
/// link fails here.
///
/// The selection is chosen so the step reuses clippy's dependency metadata
/// instead of checking the whole tree again: `--workspace` without excludes
/// and `--examples` (the workspace has no example targets; the flag turns on
/// dev-dependencies) resolve features exactly as clippy's `--workspace
/// --all-targets` does, so every third-party unit is clippy's. Dropping
/// either changes the features of serde, sqlx, mongodb and others, and the
/// step then re-checks some thirty crates. `--lib` leaves out the binaries
/// (xtask, the bench, the examples' mains): rustdoc spends seconds on each
/// and nobody reads them.
const DOC: [&str; 6] = [
    "doc",
    "--workspace",
    "--lib",
    "--examples",
    "--no-deps",
    "--all-features",
];

/// The `-p NAME` / `--package NAME` / `--package=NAME` / `-pNAME` arguments
/// among `extra`, before any `--` (after it they belong to the test binary).
fn package_args(extra: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let mut args = extra.iter().take_while(|arg| *arg != "--");
    while let Some(arg) = args.next() {
        if arg == "-p" || arg == "--package" {
            found.push(arg.clone());
            found.extend(args.next().cloned());
        } else if arg.starts_with("--package=") || (arg.starts_with("-p") && arg.len() > 2) {
            found.push(arg.clone());
        }
    }
    found
}

fn has_nextest(root: &Path) -> bool {
    cmd::run_quiet(
        &mut cargo(root, &[], &["nextest", "--version"]),
        Duration::from_secs(30),
    )
}

fn header(title: &str) {
    println!("\n==> {title}");
}

fn summary(timings: &[(String, Duration)], code: u8) {
    println!("\n==> timings");
    for (title, elapsed) in timings {
        println!("{:>8.1} s  {title}", elapsed.as_secs_f64());
    }
    match code {
        0 => println!("all steps passed"),
        _ => println!("stopped at the last step above (exit code {code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(
            Options::parse(&[]).unwrap(),
            Options {
                lint: true,
                extra: vec![]
            }
        );
        let parsed = Options::parse(&["--no-lint", "--", "-p", "x", "--no-lint"]).unwrap();
        assert_eq!(
            parsed,
            Options {
                lint: false,
                extra: vec!["-p".into(), "x".into(), "--no-lint".into()]
            }
        );
        assert!(Options::parse(&["--bogus"]).is_err());
    }

    #[test]
    fn rustdoc_runs_after_clippy_with_warnings_as_errors() {
        let deny = |command: &Command| {
            command
                .get_envs()
                .any(|(key, value)| key == "RUSTDOCFLAGS" && value == Some("-D warnings".as_ref()))
        };
        let lints: Vec<(String, bool)> = lint_steps(Path::new("."), &Options::parse(&[]).unwrap())
            .iter()
            .map(|(title, command)| (title.clone(), deny(command)))
            .collect();
        let doc = lints
            .iter()
            .position(|(title, _)| title == DOC_TITLE)
            .unwrap();
        assert!(lints[doc - 1].0.starts_with("cargo clippy"));
        assert!(lints[doc].1);
        assert_eq!(lints.iter().filter(|(_, deny)| *deny).count(), 1);
        let quick = Options::parse(&["--no-lint"]).unwrap();
        assert!(lint_steps(Path::new("."), &quick).is_empty());
    }

    #[test]
    fn the_lints_get_no_service_and_the_later_steps_get_every_one() {
        let vars = [("DATABASE_URL".to_owned(), "postgres://x".to_owned())];
        let options = Options::parse(&[]).unwrap();
        let has_vars = |command: &Command| command.get_envs().any(|(key, _)| key == "DATABASE_URL");
        let lints = lint_steps(Path::new("."), &options);
        assert!(lints.iter().all(|(_, command)| !has_vars(command)));
        let later = steps(Path::new("."), &vars, &options);
        assert!(
            later
                .iter()
                .all(|(title, _)| !title.starts_with("cargo clippy"))
        );
        assert!(later.iter().all(|(_, command)| has_vars(command)));
    }

    #[test]
    fn the_demo_runs_what_its_build_step_built() {
        let all = steps(Path::new("."), &[], &Options::parse(&[]).unwrap());
        let build = all
            .iter()
            .position(|(title, _)| title == DEMO_BUILD)
            .unwrap();
        let args: Vec<_> = all[build].1.get_args().collect();
        assert!(args.contains(&"--workspace".as_ref()));
        let binary = format!("debug/quickstart{}", std::env::consts::EXE_SUFFIX);
        assert!(Path::new(all[build + 1].1.get_program()).ends_with(binary));
        let selected = steps(
            Path::new("."),
            &[],
            &Options::parse(&["--", "-p", "x"]).unwrap(),
        );
        assert!(
            selected
                .iter()
                .all(|(title, _)| !title.starts_with("the demo"))
        );
    }

    #[test]
    fn package_selections_are_found() {
        let args = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        let extra = args(&["-p", "a", "--package=b", "-pc", "filter", "--", "-p", "z"]);
        assert_eq!(
            package_args(&extra),
            args(&["-p", "a", "--package=b", "-pc"])
        );
        assert!(package_args(&args(&["some_test", "--no-capture"])).is_empty());
    }
}
