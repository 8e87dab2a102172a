//! Redis: the user's (`REDIS_URL`), one already answering on 6379, or a
//! `redis-server` from the OS packages started on 56379.
//!
//! Ours keeps nothing on disk (`--save "" --appendonly no`): it is a cache
//! and a queue for tests, and tests that need persistence set it themselves.

use std::env;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{self, log_tail};
use super::state::Record;
use super::{Ctx, Endpoint, Origin, Service, label, text};
use crate::cmd;
use crate::error::{Context, Error};

const SHARED_PORT: u16 = 6379;
const SERVICE: Service = Service {
    name: "redis",
    var: "REDIS_URL",
    default_port: SHARED_PORT,
};
const DEFAULT_PORT: u16 = 56379;
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Files of the managed server, all under `<state>/redis`.
struct Paths {
    dir: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
    record: PathBuf,
}

impl Paths {
    fn new(ctx: &Ctx) -> Self {
        let dir = ctx.dir().join("redis");
        Self {
            log: dir.join("redis.log"),
            pid_file: dir.join("redis.pid"),
            record: ctx.dir().join("redis.state"),
            dir,
        }
    }

    /// Our URLs: the recorded server's and the shared one on 6379.
    fn own_urls(&self) -> Vec<String> {
        let port = Record::load(&self.record).and_then(|r| r.number("port"));
        port.into_iter().chain([SHARED_PORT]).map(url).collect()
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/0")
}

/// True when 127.0.0.1:`port` answers a RESP `PING` with `+PONG` within a
/// second (a server that wants a password answers `-NOAUTH` and is not used).
pub(crate) fn pings(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(1));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let mut reply = [0_u8; 7];
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && reply == *b"+PONG\r\n"
}

/// Brings Redis up: the user's, ours, the one on 6379, or ours started now.
pub(super) fn up(ctx: &Ctx) -> Result<Endpoint, Error> {
    let paths = Paths::new(ctx);
    if let Some(endpoint) = SERVICE.external(&paths.own_urls()) {
        return endpoint;
    }
    if let Some((pid, port)) = live(&paths) {
        return Ok(endpoint(Origin::Managed { pid, fresh: false }, port));
    }
    if pings(SHARED_PORT) {
        return Ok(endpoint(Origin::Shared, SHARED_PORT));
    }
    let server = find_on_path("redis-server").ok_or_else(|| {
        Error::msg("redis-server not found: install it (Debian: apt-get install redis-server) or set REDIS_URL")
    })?;
    let recorded = Record::load(&paths.record).and_then(|r| r.number("port"));
    let port = process::pick_port(&[recorded.unwrap_or(DEFAULT_PORT), DEFAULT_PORT])?;
    let pid = start(&server, &paths, port)?;
    Record::default()
        .with("port", port)
        .with("pid", pid)
        .with("log", text(&paths.log))
        .with("pid_file", text(&paths.pid_file))
        .save(&paths.record)?;
    Ok(endpoint(Origin::Managed { pid, fresh: true }, port))
}

fn endpoint(origin: Origin, port: u16) -> Endpoint {
    Endpoint {
        name: SERVICE.name,
        var: SERVICE.var,
        url: url(port),
        origin,
        extra: Vec::new(),
    }
}

/// `redis-server --daemonize yes`: it forks, writes its pid file and the
/// first process exits at once.
fn start(server: &Path, paths: &Paths, port: u16) -> Result<u32, Error> {
    fs::create_dir_all(&paths.dir).context(format!("cannot create {}", paths.dir.display()))?;
    let _ = fs::remove_file(&paths.pid_file);
    let mut redis = Command::new(server);
    redis.args([
        "--daemonize",
        "yes",
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ]);
    redis.args(["--save", "", "--appendonly", "no"]);
    redis
        .arg("--dir")
        .arg(&paths.dir)
        .arg("--logfile")
        .arg(&paths.log);
    redis
        .arg("--pidfile")
        .arg(&paths.pid_file)
        .current_dir(&paths.dir);
    let status = cmd::run_logged(&mut redis, &paths.dir.join("start.log"), READY_TIMEOUT)?;
    let failed = |why: &str| Error::msg(format!("redis: {why}\n{}", log_tail(&paths.log, 30)));
    if !status.success() {
        return Err(failed("redis-server failed to start"));
    }
    if !process::wait_until(READY_TIMEOUT, || {
        pings(port) && pid_from_file(paths).is_some()
    }) {
        if let Some(pid) = pid_from_file(paths).filter(|pid| owns(*pid, port)) {
            process::stop(&[pid]);
        }
        return Err(failed(&format!(
            "not answering PING on port {port} within 10 s"
        )));
    }
    pid_from_file(paths).ok_or_else(|| failed("no pid file"))
}

fn pid_from_file(paths: &Paths) -> Option<u32> {
    fs::read_to_string(&paths.pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Redis shows `redis-server 127.0.0.1:PORT` as its command line.
fn owns(pid: u32, port: u16) -> bool {
    process::is_ours(pid, &["redis-server", &format!(":{port}")])
}

/// Our recorded server's pid and port, when it still runs and answers.
fn live(paths: &Paths) -> Option<(u32, u16)> {
    let record = Record::load(&paths.record)?;
    let (pid, port) = (record.number("pid")?, record.number("port")?);
    (owns(pid, port) && pings(port)).then_some((pid, port))
}

pub(super) fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Running or not: the user's, ours, the shared one on 6379, or stopped.
pub(super) fn status(ctx: &Ctx) -> Result<Endpoint, String> {
    let paths = Paths::new(ctx);
    if let Some(endpoint) = SERVICE.external(&paths.own_urls()) {
        return endpoint.map_err(|err| err.to_string());
    }
    if let Some((pid, port)) = live(&paths) {
        return Ok(endpoint(Origin::Managed { pid, fresh: false }, port));
    }
    if pings(SHARED_PORT) {
        return Ok(endpoint(Origin::Shared, SHARED_PORT));
    }
    Err("stopped".to_owned())
}

/// Stops our server; the user's and the one on 6379 are left alone.
pub(super) fn down(ctx: &Ctx) -> Result<Vec<String>, Error> {
    let paths = Paths::new(ctx);
    let mut lines: Vec<String> = SERVICE.left_alone(&paths.own_urls()).into_iter().collect();
    let record = Record::load(&paths.record);
    let recorded = record
        .as_ref()
        .and_then(|r| Some((r.number::<u32>("pid")?, r.number::<u16>("port")?)));
    match recorded.filter(|(pid, port)| owns(*pid, *port)) {
        Some((pid, _)) => {
            let how = if process::stop(&[pid]) {
                "killed after 10 s"
            } else {
                "stopped"
            };
            lines.push(format!("{}{how} (pid {pid})", label("redis")));
        }
        None => lines.push(format!("{}not running, nothing to stop", label("redis"))),
    }
    if pings(SHARED_PORT) {
        lines.push(format!(
            "{}left alone the server on 127.0.0.1:{SHARED_PORT} (not started by xtask)",
            label("redis")
        ));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The managed path end to end, on a free port in a scratch directory:
    /// start, answer PING, be recognised as ours, stop, leave nothing behind.
    #[test]
    fn a_managed_server_starts_and_stops() {
        let Some(server) = find_on_path("redis-server") else {
            return;
        };
        let dir = env::temp_dir().join(format!("xtask-redis-{}", std::process::id()));
        let paths = Paths {
            log: dir.join("redis.log"),
            pid_file: dir.join("redis.pid"),
            record: dir.join("redis.state"),
            dir: dir.clone(),
        };
        let port = process::free_port().unwrap();
        let pid = start(&server, &paths, port).unwrap();
        assert!(pings(port));
        assert!(owns(pid, port));
        assert!(!owns(pid, port + 1));
        assert!(!process::stop(&[pid]));
        assert!(!pings(port));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_silent_port_does_not_ping() {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert!(!pings(listener.local_addr().unwrap().port()));
    }
}
