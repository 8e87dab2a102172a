//! Programs the end-to-end tests run beside the service: node driving
//! Debian's Chromium (`browser.rs`) and schemathesis (`schemathesis.rs`).
//! `cargo xtask test-tools` installs them (and `cargo xtask test` runs it
//! first); a test that finds one missing fails saying so, it never skips.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The command that installs every program below.
pub(crate) const INSTALL: &str = "cargo xtask test-tools";

/// Debian's Chromium, as `cargo xtask test-tools` installs it.
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

/// The workspace root (this crate is `examples/rag-service`).
pub(crate) fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    fs::canonicalize(&root).unwrap_or(root)
}

/// This crate's own directory.
pub(crate) fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/rag-e2e/<name>` under the workspace root, created empty: where a
/// test keeps its artifacts (screenshots, reports, the programs' output).
pub(crate) fn artifacts(name: &str) -> PathBuf {
    let dir = workspace_root().join("target").join("rag-e2e").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// `path` when it exists; otherwise the test fails naming what is missing
/// and the command that installs it.
pub(crate) fn require(path: impl Into<PathBuf>, what: &str) -> PathBuf {
    let path = path.into();
    assert!(
        path.exists(),
        "{what} is missing ({} not found): run `{INSTALL}` (as root: it installs \
         Debian's chromium with apt-get, the browser test's npm packages and \
         schemathesis), then this test again",
        path.display()
    );
    path
}

/// What a program did: its exit status, both outputs and its wall time.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The exit status.
    pub(crate) status: ExitStatus,
    /// Everything it wrote to stdout.
    pub(crate) stdout: String,
    /// Everything it wrote to stderr.
    pub(crate) stderr: String,
    /// From start to exit.
    pub(crate) elapsed: Duration,
}

impl Finished {
    /// Both outputs, for a failure message.
    pub(crate) fn output(&self) -> String {
        format!(
            "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `command` to its end, at most `timeout`: its outputs go to files in
/// `dir` (no pipe to fill up), and on timeout its whole process group (node
/// and the browser it launched) is killed and the test fails with what it
/// printed so far. Blocking: call it from `spawn_blocking`.
pub(crate) fn run(mut command: Command, dir: &Path, name: &str, timeout: Duration) -> Finished {
    use std::os::unix::process::CommandExt;

    let out_path = dir.join(format!("{name}.stdout"));
    let err_path = dir.join(format!("{name}.stderr"));
    let create = |path: &Path| {
        fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
    };
    command
        .stdin(Stdio::null())
        .stdout(create(&out_path))
        .stderr(create(&err_path))
        .process_group(0);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
    let read = |path: &Path| fs::read_to_string(path).unwrap_or_default();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return Finished {
                status,
                stdout: read(&out_path),
                stderr: read(&err_path),
                elapsed: started.elapsed(),
            };
        }
        if started.elapsed() > timeout {
            // The group: node's Chromium would outlive node alone.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not finish within {} s\n--- stdout ---\n{}\n--- stderr ---\n{}",
                timeout.as_secs(),
                read(&out_path),
                read(&err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A program past its deadline is killed with everything it started, and
/// the test fails saying so.
#[test]
fn a_program_past_its_deadline_is_killed_with_its_children() {
    let dir = artifacts("external-deadline");
    let pid_file = dir.join("child.pid");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("sleep 30 & echo $! > {}; wait", pid_file.display()));
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(command, &dir, "sleeper", Duration::from_millis(500))
    }));
    let message = outcome
        .expect_err("the deadline passed")
        .downcast::<String>()
        .expect("a message");
    assert!(message.contains("did not finish within"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let child = fs::read_to_string(&pid_file).expect("the child's pid");
    // Reaped by init shortly after the kill: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{}", child.trim())).exists() {
        let stat = fs::read_to_string(format!("/proc/{}/stat", child.trim())).unwrap_or_default();
        if stat.split_whitespace().nth(2) == Some("Z") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the background sleep outlived its group"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
