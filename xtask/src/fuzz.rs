//! `cargo xtask fuzz [--seconds N] [TARGET...]`: the cargo-fuzz targets of
//! `fuzz/` under libFuzzer, each for a bounded time, with a summary.
//!
//! Installs cargo-fuzz when missing (`cargo install cargo-fuzz --locked`),
//! builds the targets once with the nightly toolchain (sanitizer builds
//! need it), then runs each one for N seconds (default 30) from its
//! committed seeds, `fuzz/corpus/<target>/`. New inputs go to a working
//! corpus, `fuzz/corpus-run/<target>/` (not committed), so the seeds stay
//! small. The summary gives each target's executions, rate and new corpus
//! entries; a crash fails the task and names the input libFuzzer wrote
//! (`fuzz/artifacts/<target>/crash-…`). Once the bug is fixed, that input
//! goes to `fuzz/regressions/<target>/`, which the suite replays.
//!
//! CI does not run this: on a fresh clone, installing cargo-fuzz and the
//! sanitizer build of the targets' dependencies (sqlx, the MongoDB driver)
//! take minutes before the first execution (see the numbers in
//! `fuzz/README.md`). CI replays the committed inputs instead
//! (`fuzz_corpus::` in the suite), on stable Rust, in well under a second.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::error::Error;

/// Every target of `fuzz/Cargo.toml`, in the order they run.
const TARGETS: [&str; 3] = ["cursor_decode", "bson_codec", "copy_encoder"];

/// What `fuzz` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    seconds: u64,
    targets: Vec<String>,
}

impl Options {
    /// Parses `[--seconds N] [TARGET...]`.
    pub(crate) fn parse(args: &[&str]) -> Result<Self, Error> {
        let usage = "usage: cargo xtask fuzz [--seconds N] [TARGET...]";
        let mut options = Options {
            seconds: 30,
            targets: Vec::new(),
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match *arg {
                "--seconds" => {
                    options.seconds = rest
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            Error::msg(format!("--seconds takes a positive number; {usage}"))
                        })?;
                }
                target if TARGETS.contains(&target) => options.targets.push(target.to_owned()),
                other => {
                    return Err(Error::msg(format!(
                        "unknown target or option {other}: the targets are {}; {usage}",
                        TARGETS.join(", ")
                    )));
                }
            }
        }
        if options.targets.is_empty() {
            options.targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
        }
        Ok(options)
    }
}

/// What one libFuzzer run reported.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stats {
    executions: Option<u64>,
    per_second: Option<u64>,
    new_units: Option<u64>,
    /// The input libFuzzer wrote when the target failed.
    artifact: Option<String>,
}

/// The final statistics (`-print_final_stats=1`) and any crash input of a
/// libFuzzer log.
fn stats(log: &str) -> Stats {
    let stat = |name: &str| {
        log.lines()
            .find_map(|line| line.strip_prefix(&format!("stat::{name}:")))
            .and_then(|value| value.trim().parse().ok())
    };
    let artifact = log
        .lines()
        .find_map(|line| line.split_once("Test unit written to "))
        .map(|(_, path)| path.trim().to_owned());
    Stats {
        executions: stat("number_of_executed_units"),
        per_second: stat("average_exec_per_sec"),
        new_units: stat("new_units_added"),
        artifact,
    }
}

/// Installs cargo-fuzz if needed, builds the targets, runs each, summarises.
pub(crate) fn run(root: &Path, options: &Options) -> Result<ExitCode, Error> {
    let nightly = cmd::capture(
        Command::new("rustup").args(["run", "nightly", "rustc", "--version"]),
        Duration::from_secs(60),
    )
    .ok_or_else(|| {
        Error::msg(
            "the nightly toolchain is missing (libFuzzer's sanitizer builds need it): \
             rustup toolchain install nightly",
        )
    })?;
    println!("==> {nightly}");
    if !cmd::run_quiet(
        Command::new("cargo").args(["fuzz", "--version"]),
        Duration::from_secs(60),
    ) {
        println!("\n==> cargo install cargo-fuzz --locked (not installed)");
        let started = Instant::now();
        let status = cmd::run_inherit(
            Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]),
            Duration::from_secs(1200),
        )?;
        if !status.success() {
            return Err(Error::msg("cargo install cargo-fuzz failed"));
        }
        println!("installed in {:.0} s", started.elapsed().as_secs_f64());
    }
    println!("\n==> cargo +nightly fuzz build (all targets)");
    let started = Instant::now();
    let status = cmd::run_inherit(&mut fuzz_cargo(root, &["build"]), build_timeout())?;
    if !status.success() {
        return Err(Error::msg("building the fuzz targets failed"));
    }
    println!("built in {:.0} s", started.elapsed().as_secs_f64());
    let logs = root.join("fuzz/target/xtask-logs");
    std::fs::create_dir_all(&logs)?;
    let mut rows = Vec::new();
    for target in &options.targets {
        rows.push((target, fuzz_one(root, &logs, target, options.seconds)?));
    }
    println!("\n==> fuzzing summary ({} s per target)", options.seconds);
    let mut crashed = false;
    for (target, stats) in &rows {
        let number = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let verdict = match &stats.artifact {
            Some(path) => {
                crashed = true;
                format!("CRASH, input in {path}")
            }
            None => "no crash".to_owned(),
        };
        println!(
            "{target:<14} {:>12} executions {:>8}/s {:>6} new corpus entries  {verdict}",
            number(stats.executions),
            number(stats.per_second),
            number(stats.new_units),
        );
    }
    if crashed {
        println!(
            "fix the bug, then copy the input into fuzz/regressions/<target>/ so the suite replays it"
        );
    }
    Ok(if crashed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs `target` for `seconds` from its seeds; its statistics.
fn fuzz_one(root: &Path, logs: &Path, target: &str, seconds: u64) -> Result<Stats, Error> {
    let work = root.join("fuzz/corpus-run").join(target);
    std::fs::create_dir_all(&work)?;
    let seeds = root.join("fuzz/corpus").join(target);
    let log = logs.join(format!("{target}.log"));
    let _ = std::fs::remove_file(&log);
    let max_time = format!("-max_total_time={seconds}");
    let (work, seeds) = (path_arg(&work), path_arg(&seeds));
    let args = [
        "run",
        target,
        &work,
        &seeds,
        "--",
        &max_time,
        // The targets hold no state; a run growing past this leaks.
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
    ];
    println!("\n==> {target}: {seconds} s (log: {})", log.display());
    // libFuzzer stops itself at -max_total_time; the slack covers loading
    // the corpus and writing a crash.
    let timeout = Duration::from_secs(seconds + 300);
    let status = cmd::run_logged(&mut fuzz_cargo(root, &args), &log, timeout)?;
    let text = std::fs::read_to_string(&log)?;
    let mut stats = stats(&text);
    if !status.success() && stats.artifact.is_none() {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(Error::msg(format!(
            "{target} failed without a crash input:\n{}",
            tail.join("\n")
        )));
    }
    if status.success() {
        stats.artifact = None;
    }
    Ok(stats)
}

/// `cargo +nightly fuzz ARGS -O` from the root, building in `fuzz/target`
/// whatever `CARGO_TARGET_DIR` says (the sanitizer build shares nothing
/// with the workspace's).
fn fuzz_cargo(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("cargo");
    let (first, rest) = args.split_first().expect("a cargo fuzz subcommand");
    command
        .args(["+nightly", "fuzz", first, "-O"])
        .args(rest)
        .current_dir(root)
        .env("CARGO_TARGET_DIR", root.join("fuzz/target"));
    // What `cargo run` set for xtask itself (its package's CARGO_PKG_*,
    // its toolchain, its library path): passed on, they changed the build
    // scripts' environment, and the sanitizer build started over.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if inherited_from_cargo_run(&key) {
            command.env_remove(&*key);
        }
    }
    command
}

/// Variables `cargo run` sets for the program it runs.
fn inherited_from_cargo_run(key: &str) -> bool {
    let exact = [
        "CARGO",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "LD_LIBRARY_PATH",
        "RUSTUP_TOOLCHAIN",
        "RUSTUP_TOOLCHAIN_SOURCE",
        "RUST_RECURSION_COUNT",
    ];
    exact.contains(&key) || key.starts_with("CARGO_PKG_")
}

fn path_arg(path: &Path) -> String {
    PathBuf::from(path).to_string_lossy().into_owned()
}

/// The sanitizer build of sqlx and the MongoDB driver from nothing took
/// minutes on the 2-core machine; an hour means something is stuck.
fn build_timeout() -> Duration {
    Duration::from_secs(3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let all = Options::parse(&[]).unwrap();
        assert_eq!(all.seconds, 30);
        assert_eq!(all.targets, TARGETS);
        let one = Options::parse(&["--seconds", "5", "bson_codec"]).unwrap();
        assert_eq!(one.seconds, 5);
        assert_eq!(one.targets, ["bson_codec"]);
        assert!(Options::parse(&["--seconds", "0"]).is_err());
        assert!(Options::parse(&["--seconds"]).is_err());
        assert!(Options::parse(&["nope"]).is_err());
    }

    #[test]
    fn cargo_runs_own_variables_are_not_passed_on() {
        assert!(inherited_from_cargo_run("CARGO_PKG_NAME"));
        assert!(inherited_from_cargo_run("CARGO_MANIFEST_DIR"));
        assert!(inherited_from_cargo_run("LD_LIBRARY_PATH"));
        assert!(!inherited_from_cargo_run("CARGO_HOME"));
        assert!(!inherited_from_cargo_run("PATH"));
    }

    #[test]
    fn final_stats_and_crash_inputs_are_read_from_the_log() {
        let log = "#2235516\tDONE   cov: 2930 ft: 10529 corp: 1992/153Kb exec/s: 7426\n\
                   stat::number_of_executed_units: 2235516\n\
                   stat::average_exec_per_sec:     7426\n\
                   stat::new_units_added:          1948\n";
        assert_eq!(
            stats(log),
            Stats {
                executions: Some(2_235_516),
                per_second: Some(7_426),
                new_units: Some(1_948),
                artifact: None,
            }
        );
        let crash = "SUMMARY: libFuzzer: deadly signal\n\
                     artifact_prefix='/w/fuzz/artifacts/cursor_decode/'; Test unit written to /w/fuzz/artifacts/cursor_decode/crash-97\n";
        assert_eq!(
            stats(crash).artifact.as_deref(),
            Some("/w/fuzz/artifacts/cursor_decode/crash-97")
        );
    }
}
