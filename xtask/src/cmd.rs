//! Running child programs with a deadline.
//!
//! Every wait in xtask is bounded: a child that overstays its timeout is
//! stopped together with its descendants, and the task fails saying which
//! command it was.

use std::fs::OpenOptions;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{Context, Error};
use crate::services::process;

/// Runs `cmd` with its output appended to `log`; the caller shows the log's
/// tail when the status is a failure.
pub(crate) fn run_logged(
    cmd: &mut Command,
    log: &Path,
    timeout: Duration,
) -> Result<ExitStatus, Error> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .context(format!("cannot open {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    run(cmd, timeout)
}

/// One `apt-get` run with `args`, non-interactive, its output appended to
/// `log`; true when it succeeded.
///
/// Runs are serialized within this process: `cargo xtask test` installs
/// PgBouncer and Chromium from two threads, and while `DPkg::Lock::Timeout`
/// makes apt wait for dpkg's lock, `apt-get update` does not wait for the
/// package lists' lock, so two at once would fail one of them.
pub(crate) fn apt_get(args: &[&str], log: &Path, timeout: Duration) -> bool {
    apt_get_in(None, args, log, timeout)
}

/// [`apt_get`] in directory `dir` (where `apt-get download` saves).
pub(crate) fn apt_get_in(dir: Option<&Path>, args: &[&str], log: &Path, timeout: Duration) -> bool {
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = APT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut apt = Command::new("apt-get");
    if let Some(dir) = dir {
        apt.current_dir(dir);
    }
    apt.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-o", "DPkg::Lock::Timeout=120"])
        .args(args);
    run_logged(&mut apt, log, timeout).is_ok_and(|status| status.success())
}

/// Runs `cmd` with no output and says whether it succeeded.
pub(crate) fn run_quiet(cmd: &mut Command, timeout: Duration) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run(cmd, timeout).is_ok_and(|status| status.success())
}

/// Runs `cmd` with the terminal's stdin, stdout and stderr.
pub(crate) fn run_inherit(cmd: &mut Command, timeout: Duration) -> Result<ExitStatus, Error> {
    run(cmd, timeout)
}

/// Runs `cmd` and returns its stdout, trimmed; `None` when it fails.
pub(crate) fn capture(cmd: &mut Command, timeout: Duration) -> Option<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    // Read on a thread so the deadline holds even if a daemon it started
    // keeps the pipe open; such a thread is abandoned, not joined.
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = send.send(stdout.read_to_string(&mut text).map(|_| text));
    });
    let status = wait(child, timeout).ok()?;
    let text = receive.recv_timeout(Duration::from_secs(1)).ok()?.ok()?;
    status.success().then(|| text.trim().to_owned())
}

fn run(cmd: &mut Command, timeout: Duration) -> Result<ExitStatus, Error> {
    let what = describe(cmd);
    let child = cmd.spawn().context(format!("cannot run `{what}`"))?;
    wait(child, timeout).context(format!("`{what}`"))
}

/// Waits for `child` at most `timeout`; on timeout stops it and everything it
/// started, so nothing of ours outlives the task.
pub(crate) fn wait(mut child: Child, timeout: Duration) -> Result<ExitStatus, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let mut pids = process::descendants(child.id());
            pids.push(child.id());
            process::stop(&pids);
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::msg(format!(
                "timed out after {} s",
                timeout.as_secs()
            )));
        }
        sleep(Duration::from_millis(50));
    }
}

/// The program and its arguments, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    words.join(" ")
}

/// The exit code to hand on for `status`: its own, or 1 for a signal.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    status
        .code()
        .map_or(1, |code| u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_child_is_stopped_at_its_deadline() {
        let start = Instant::now();
        let result = run_quiet(Command::new("sleep").arg("30"), Duration::from_millis(300));
        assert!(!result);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn output_is_captured() {
        let out = capture(
            Command::new("sh").args(["-c", "echo ' hi '"]),
            Duration::from_secs(5),
        );
        assert_eq!(out.as_deref(), Some("hi"));
        assert_eq!(
            capture(&mut Command::new("false"), Duration::from_secs(5)),
            None
        );
    }

    #[test]
    fn exit_codes_are_handed_on() {
        let status = run_inherit(
            Command::new("sh").args(["-c", "exit 7"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(exit_code(status), 7);
    }
}
