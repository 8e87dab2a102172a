//! The PostgreSQL streaming replica and the PgBouncer of `cargo xtask
//! services up --replica --pgbouncer` (both started by `cargo xtask test`):
//! their URLs, and stopping and starting the replica for fault tests.
//!
//! The URLs come from `REPOSMITH_TEST_PG_REPLICA_URL`,
//! `REPOSMITH_TEST_PGBOUNCER_URL` and `REPOSMITH_TEST_PGBOUNCER_REPLICA_URL`
//! (PgBouncer's database in front of the replica); [`stop_replica`] and
//! [`start_replica`] run the wheel's `pg_ctl` (`REPOSMITH_PG_BIN_DIR`) on
//! `REPOSMITH_PG_REPLICA_DATA` as `REPOSMITH_PG_OS_USER`, through `runuser`
//! when the tests run as root (Postgres refuses root). The replica keeps its
//! settings in its data directory, so a plain `pg_ctl start` brings it back
//! as xtask started it, streaming from its slot.
//!
//! The process calls block the calling thread for up to a minute; from an
//! async test that is fine (nothing else runs meanwhile), or use
//! `tokio::task::spawn_blocking`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::unique_name;

/// The replica's URL (database `reposmith`, the primary's credentials).
pub const REPLICA_URL: &str = "REPOSMITH_TEST_PG_REPLICA_URL";
/// PgBouncer in transaction mode in front of the primary.
pub const PGBOUNCER_URL: &str = "REPOSMITH_TEST_PGBOUNCER_URL";
/// PgBouncer's database `reposmith_replica`, in front of the replica.
pub const PGBOUNCER_REPLICA_URL: &str = "REPOSMITH_TEST_PGBOUNCER_REPLICA_URL";
/// Set by xtask, with the reason, when the replica and PgBouncer cannot
/// exist here: `DATABASE_URL` names the user's own server, and they follow
/// the project's.
pub const SKIPPED: &str = "REPOSMITH_TEST_PG_EXTRAS_SKIPPED";

/// Longest wait for `pg_ctl stop -m fast`.
const STOP_WITHIN: Duration = Duration::from_secs(30);
/// Longest wait for a started replica to accept connections in recovery.
const START_WITHIN: Duration = Duration::from_secs(60);

/// The replica's URL, when it runs.
pub fn replica_url() -> Option<String> {
    var(REPLICA_URL)
}

/// PgBouncer's URL in front of the primary, when it runs.
pub fn pgbouncer_url() -> Option<String> {
    var(PGBOUNCER_URL)
}

/// PgBouncer's URL in front of the replica, when both run.
pub fn pgbouncer_replica_url() -> Option<String> {
    var(PGBOUNCER_REPLICA_URL)
}

/// The URL in `variable` (one of the constants above) for a test that
/// needs it. `None`, printing why, only when xtask said the replica and
/// PgBouncer cannot exist here ([`SKIPPED`]): the test then returns early.
/// Otherwise a missing variable is a panic saying how to start them, so a
/// test never passes unseen because a service did not start.
///
/// ```no_run
/// use reposmith_tests::pg_replica::{self, REPLICA_URL};
/// let Some(url) = pg_replica::required(REPLICA_URL) else {
///     return;
/// };
/// ```
pub fn required(variable: &str) -> Option<String> {
    if let Some(url) = var(variable) {
        return Some(url);
    }
    if let Some(why) = var(SKIPPED) {
        println!("skipped: {variable} is not set: the replica and PgBouncer {why}");
        return None;
    }
    panic!(
        "{variable} is not set: run the suite with `cargo xtask test`, or run \
         `cargo xtask services up --replica --pgbouncer` and \
         `eval \"$(cargo xtask services env)\"`"
    )
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Stops the replica (`pg_ctl stop -m fast`: its sessions are ended and it
/// shuts down cleanly); returns once it has exited. Panics on failure.
pub fn stop_replica() {
    let data = data_dir();
    let wait = STOP_WITHIN.as_secs().to_string();
    let mut stop = pg_ctl(&data);
    stop.args(["stop", "-m", "fast", "-w", "-t", &wait]);
    run(stop, STOP_WITHIN + Duration::from_secs(10));
}

/// Starts the replica again from its data directory and returns once it
/// accepts connections and `pg_is_in_recovery()` is true. Panics with its
/// log's tail when it does not within a minute.
pub fn start_replica() {
    let data = data_dir();
    let log = data
        .parent()
        .expect("the data directory has a parent")
        .join("postgres.log");
    let wait = START_WITHIN.as_secs().to_string();
    let mut start = pg_ctl(&data);
    start.arg("-l").arg(&log).args(["-w", "-t", &wait, "start"]);
    run(start, START_WITHIN + Duration::from_secs(10));
    let url = crate::service_url(REPLICA_URL);
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < START_WITHIN {
        match in_recovery(&url) {
            Ok(true) => return,
            Ok(false) => last = "pg_is_in_recovery() is false: it was promoted".to_owned(),
            Err(err) => last = err,
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the replica did not come back in recovery within {START_WITHIN:?}: {last}\n{}",
        tail(&log)
    );
}

/// `pg_is_in_recovery()` on the server at `url`, asked through the wheel's psql.
fn in_recovery(url: &str) -> Result<bool, String> {
    let mut psql = Command::new(bin_dir().join("psql"));
    psql.args(["-X", "-A", "-t", "-c", "SELECT pg_is_in_recovery()"])
        .arg(url)
        .env("PGCONNECT_TIMEOUT", "2");
    let output = run_for(psql, Duration::from_secs(10))?;
    Ok(output.trim() == "t")
}

fn data_dir() -> PathBuf {
    PathBuf::from(crate::service_url("REPOSMITH_PG_REPLICA_DATA"))
}

pub(crate) fn bin_dir() -> PathBuf {
    PathBuf::from(crate::service_url("REPOSMITH_PG_BIN_DIR"))
}

/// `pg_ctl -D <data>` as the OS user that owns the data directory: through
/// `runuser` when we are root, from a directory that user may enter.
pub(crate) fn pg_ctl(data: &Path) -> Command {
    pg_ctl_from(&bin_dir(), data)
}

/// Like [`pg_ctl`], with `pg_ctl` from `bin`.
pub(crate) fn pg_ctl_from(bin: &Path, data: &Path) -> Command {
    let mut command = as_os_user_from(bin, "pg_ctl", data.parent().unwrap_or(data));
    command.arg("-D").arg(data);
    command
}

/// `program` from `bin` (the wheel's, [`bin_dir`], unless a test runs
/// other binaries) as the project's PostgreSQL OS user (through `runuser`
/// when we are root), run from `dir`.
pub(crate) fn as_os_user_from(bin: &Path, program: &str, dir: &Path) -> Command {
    let program = bin.join(program);
    let user = os_user();
    let mut command = if euid() == 0 && user != "root" {
        let mut runuser = Command::new("runuser");
        runuser.args(["-u", &user, "--"]).arg(program);
        runuser
    } else {
        Command::new(program)
    };
    command.current_dir(dir);
    command
}

/// The OS user the project's PostgreSQL runs as.
pub(crate) fn os_user() -> String {
    crate::service_url("REPOSMITH_PG_OS_USER")
}

/// Our effective uid, from `/proc/self/status` (no libc here).
pub(crate) fn euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Runs `command`, panicking with its output when it fails or overstays.
pub(crate) fn run(command: Command, timeout: Duration) {
    if let Err(err) = run_for(command, timeout) {
        panic!("{err}");
    }
}

/// Runs `command` for at most `timeout`; its output, or why it failed. The
/// output goes through a file, not a pipe: a server the command starts
/// could hold a pipe open after the command itself exits.
pub(crate) fn run_for(mut command: Command, timeout: Duration) -> Result<String, String> {
    let what = format!("{command:?}");
    let out = std::env::temp_dir().join(unique_name("reposmith-pg-ctl"));
    let file = fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let err_file = file.try_clone().map_err(|e| e.to_string())?;
    command.stdin(Stdio::null()).stdout(file).stderr(err_file);
    let mut child = command.spawn().map_err(|e| format!("{what}: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let output = fs::read_to_string(&out).unwrap_or_default();
    let _ = fs::remove_file(&out);
    match status {
        Some(status) if status.success() => Ok(output),
        Some(status) => Err(format!("{what} failed ({status}):\n{output}")),
        None => Err(format!(
            "{what} did not finish within {timeout:?}:\n{output}"
        )),
    }
}

/// The last lines of the replica's log, for a panic message.
pub(crate) fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let last = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("--- last lines of {} ---\n{last}", log.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_overstays_is_stopped() {
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let started = Instant::now();
        let err = run_for(sleep, Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn output_and_failures_are_reported() {
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo out; echo err >&2"]);
        let output = run_for(echo, Duration::from_secs(5)).unwrap();
        assert!(output.contains("out") && output.contains("err"));
        let mut fail = Command::new("sh");
        fail.args(["-c", "echo why; exit 3"]);
        let err = run_for(fail, Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("why") && err.contains('3'), "{err}");
    }
}
