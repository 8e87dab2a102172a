//! Processes and ports: who is alive, is it ours, stop it, is a port free,
//! wait for readiness.
//!
//! Linux only, read from `/proc`, because xtask is std-only (no libc):
//! signals go through the shell's `kill` builtin, which every POSIX `sh` has.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

/// How long `stop` waits after SIGTERM before it sends SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// The effective uid of this process, from `/proc/self/status`.
pub(crate) fn euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .unwrap_or(u32::MAX)
}

/// True when `pid` exists and is not a zombie (a zombie has exited already;
/// it only waits for its parent to read its status).
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat_field(&stat, 0).is_some_and(|state| state != "Z")
}

/// The fields of `/proc/<pid>/stat` after the command name, which may itself
/// hold spaces and parentheses: index 0 is the state, 1 the ppid, 2 the pgrp.
fn stat_field(stat: &str, index: usize) -> Option<&str> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(index)
}

/// The command line of `pid` with its arguments joined by spaces.
pub(crate) fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&raw).replace('\0', " ");
    Some(text.trim_end().to_owned())
}

/// True when `pid` is alive and its command line contains every needle.
///
/// This is what keeps `down` from killing a stranger: a recorded pid may have
/// been recycled since `up`, but not into a process with our program name and
/// our data path on its command line.
pub(crate) fn is_ours(pid: u32, needles: &[&str]) -> bool {
    alive(pid) && cmdline(pid).is_some_and(|line| needles.iter().all(|n| line.contains(n)))
}

/// Every live process whose parent chain leads to `root`, `root` excluded.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, stat_field(&stat, 1)?.parse().ok()?))
        })
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(pid, _)| *pid),
        );
        next += 1;
    }
    found.remove(0);
    found
}

/// Every live member of process group `pgid`.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .is_some_and(|stat| stat_field(&stat, 2) == Some(&pgid.to_string()))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Sends `signal` (a name such as `TERM`) to each pid; errors are ignored
/// because a process may exit between our check and the signal.
pub(crate) fn signal(pids: &[u32], signal: &str) {
    for pid in pids {
        let _ = Command::new("sh")
            .args(["-c", "kill -s \"$0\" \"$1\"", signal, &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// Stops `pids`: SIGTERM, up to `STOP_GRACE` for them to exit, then SIGKILL.
/// Returns true when they had to be killed.
pub(crate) fn stop(pids: &[u32]) -> bool {
    signal(pids, "TERM");
    let all_gone = || pids.iter().all(|pid| !alive(*pid));
    if wait_until(STOP_GRACE, all_gone) {
        return false;
    }
    signal(pids, "KILL");
    wait_until(Duration::from_secs(5), all_gone);
    true
}

/// Polls `ready` every 100 ms until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(100));
    }
}

/// True when a TCP connection to `host:port` succeeds within `timeout`.
pub(crate) fn tcp_reachable(host: &str, port: u16, timeout: Duration) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    // Name lookup has no timeout of its own: run it on a thread we may abandon.
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        let addrs: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .into_iter()
            .flatten()
            .collect();
        let _ = send.send(addrs);
    });
    let addrs = receive.recv_timeout(timeout).unwrap_or_default();
    addrs
        .iter()
        .any(|addr| TcpStream::connect_timeout(addr, timeout).is_ok())
}

/// True when nothing listens on 127.0.0.1:`port` (we could bind it).
pub(crate) fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A loopback port the kernel says is free right now.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// `preferred` when free, else any free loopback port.
pub(crate) fn pick_port(preferred: &[u16]) -> std::io::Result<u16> {
    match preferred.iter().find(|port| port_free(**port)) {
        Some(port) => Ok(*port),
        None => free_port(),
    }
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub(crate) fn log_tail(path: &std::path::Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n");
            format!("--- last {lines} lines of {} ---\n{tail}", path.display())
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let stat = "42 (a b) c)) S 1 42 42 0";
        assert_eq!(stat_field(stat, 0), Some("S"));
        assert_eq!(stat_field(stat, 1), Some("1"));
        assert_eq!(stat_field(stat, 2), Some("42"));
    }

    #[test]
    fn this_process_is_alive_and_found_by_its_name() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(is_ours(me, &["xtask"]));
        assert!(!is_ours(me, &["xtask", "no-such-needle"]));
    }

    #[test]
    fn a_bound_port_is_not_free() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!port_free(port));
        assert!(tcp_reachable("127.0.0.1", port, Duration::from_secs(1)));
        assert_ne!(pick_port(&[port]).unwrap(), port);
    }
}
