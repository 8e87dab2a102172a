//! The MongoDB wire protocol, served by SecantusDB (`secantusd-py`): a
//! single-node replica set named `secantus` with transactions.
//!
//! No MongoDB server is in any registry this project can reach; production
//! targets MongoDB 7+, so server-specific behaviour stays behind capability
//! checks in the library, not here.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{self, log_tail};
use super::state::Record;
use super::{Ctx, Endpoint, Origin, Service, label, text};
use crate::error::{Context, Error};

const SERVICE: Service = Service {
    name: "mongo",
    var: "MONGODB_URL",
    default_port: 27017,
};
const DEFAULT_PORT: u16 = 27117;
/// It is ready in about 5 s here; a cold Python import cache can take longer.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// A line the server logs once it accepts connections.
const READY_LINE: &str = "listening";

/// Files of the managed server, all under `<state>/mongo`.
struct Paths {
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    record: PathBuf,
}

impl Paths {
    fn new(ctx: &Ctx) -> Self {
        let dir = ctx.dir().join("mongo");
        Self {
            data: dir.join("data"),
            log: dir.join("mongo.log"),
            record: ctx.dir().join("mongo.state"),
            dir,
        }
    }

    /// True when `pid` is our server: its program and our data path are on
    /// its command line.
    fn owns(&self, pid: u32) -> bool {
        process::is_ours(pid, &["secantusd-py", &text(&self.data)])
    }

    /// The URL of our server at its recorded port, if it ever ran.
    fn own_urls(&self) -> Vec<String> {
        let port = Record::load(&self.record).and_then(|r| r.number("port"));
        port.map(url).into_iter().collect()
    }
}

fn url(port: u16) -> String {
    format!("mongodb://127.0.0.1:{port}/reposmith?directConnection=true")
}

/// Brings the server up: the user's, ours already running, or ours started now.
pub(super) fn up(ctx: &Ctx) -> Result<Endpoint, Error> {
    let paths = Paths::new(ctx);
    if let Some(endpoint) = SERVICE.external(&paths.own_urls()) {
        return endpoint;
    }
    if let Some((pid, port)) = live(&paths) {
        return Ok(endpoint(pid, port, false));
    }
    let secantusd = ctx.venv()?.secantusd();
    fs::create_dir_all(&paths.data).context(format!("cannot create {}", paths.data.display()))?;
    let recorded = Record::load(&paths.record).and_then(|r| r.number("port"));
    let port = process::pick_port(&[recorded.unwrap_or(DEFAULT_PORT), DEFAULT_PORT])?;
    let pid = spawn(&secantusd, &paths, port)?;
    Record::default()
        .with("port", port)
        .with("pid", pid)
        .with("data", text(&paths.data))
        .with("log", text(&paths.log))
        .save(&paths.record)?;
    wait_ready(&paths, pid, port)?;
    Ok(endpoint(pid, port, true))
}

fn endpoint(pid: u32, port: u16, fresh: bool) -> Endpoint {
    let origin = Origin::Managed { pid, fresh };
    Endpoint {
        name: SERVICE.name,
        var: SERVICE.var,
        url: url(port),
        origin,
        extra: Vec::new(),
    }
}

/// Starts the server in its own process group, so it outlives this task
/// and a Ctrl-C meant for a test run does not reach it.
fn spawn(secantusd: &std::path::Path, paths: &Paths, port: u16) -> Result<u32, Error> {
    // Keep the previous run's log for post-mortems; the ready check must not
    // see its "listening" line.
    let _ = fs::rename(&paths.log, paths.log.with_extension("log.prev"));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)?;
    let mut server = Command::new(secantusd);
    server.args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--storage-path",
    ]);
    server
        .arg(&paths.data)
        .current_dir(&paths.dir)
        .env("PYTHONUNBUFFERED", "1");
    server
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let child = server
        .spawn()
        .context(format!("cannot start {}", secantusd.display()))?;
    Ok(child.id())
}

/// Ready when the port accepts connections and the log says it listens;
/// fails early when the server exits, and stops it when it never gets ready.
fn wait_ready(paths: &Paths, pid: u32, port: u16) -> Result<(), Error> {
    let ready = || {
        !process::alive(pid)
            || (process::tcp_reachable("127.0.0.1", port, Duration::from_secs(1))
                && fs::read_to_string(&paths.log).is_ok_and(|log| log.contains(READY_LINE)))
    };
    if process::wait_until(READY_TIMEOUT, ready) && process::alive(pid) {
        return Ok(());
    }
    let why = if process::alive(pid) {
        "did not get ready within 90 s"
    } else {
        "exited during start"
    };
    stop_pid(pid, paths);
    Err(Error::msg(format!(
        "mongo (secantusd-py on port {port}) {why}\n{}",
        log_tail(&paths.log, 30)
    )))
}

/// Our recorded server's pid and port, when it still runs and answers.
fn live(paths: &Paths) -> Option<(u32, u16)> {
    let record = Record::load(&paths.record)?;
    let (pid, port) = (record.number("pid")?, record.number("port")?);
    (paths.owns(pid) && process::tcp_reachable("127.0.0.1", port, Duration::from_secs(3)))
        .then_some((pid, port))
}

/// Running or not, from the user's variable or our own server.
pub(super) fn status(ctx: &Ctx) -> Result<Endpoint, String> {
    let paths = Paths::new(ctx);
    if let Some(endpoint) = SERVICE.external(&paths.own_urls()) {
        return endpoint.map_err(|err| err.to_string());
    }
    live(&paths)
        .map(|(pid, port)| endpoint(pid, port, false))
        .ok_or_else(|| "stopped".to_owned())
}

/// Stops our server and its whole process group, never the user's.
pub(super) fn down(ctx: &Ctx) -> Result<Vec<String>, Error> {
    let paths = Paths::new(ctx);
    let mut lines: Vec<String> = SERVICE.left_alone(&paths.own_urls()).into_iter().collect();
    let pid = Record::load(&paths.record).and_then(|r| r.number::<u32>("pid"));
    match pid.filter(|pid| paths.owns(*pid)) {
        Some(pid) => {
            let killed = stop_pid(pid, &paths);
            let how = if killed {
                "killed after 10 s"
            } else {
                "stopped"
            };
            lines.push(format!("{}{how} (pid {pid})", label("mongo")));
        }
        None => lines.push(format!("{}not running, nothing to stop", label("mongo"))),
    }
    Ok(lines)
}

/// Stops `pid` with its group and descendants, after checking it is ours.
/// Returns true when SIGKILL was needed.
fn stop_pid(pid: u32, paths: &Paths) -> bool {
    if !paths.owns(pid) {
        return false;
    }
    let mut pids = process::group_members(pid);
    pids.extend(process::descendants(pid));
    pids.push(pid);
    pids.sort_unstable();
    pids.dedup();
    process::stop(&pids)
}
