//! `services up --pgbouncer`: Debian's PgBouncer in transaction mode in
//! front of our primary (database `reposmith`) and, when it runs, our
//! replica (database `reposmith_replica`), for the pooler tests.
//!
//! Installed with `apt-get` when missing and we are root, without letting
//! the package's own service start on 6432. Ours runs as the same
//! unprivileged OS user as Postgres (PgBouncer refuses root too) from its
//! own ini under `<state>/pgbouncer/`, on 56432 by default; `down` stops
//! exactly that process.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::postgres::{self, OsUser, PASSWORD};
use super::process::{self, log_tail};
use super::state::Record;
use super::{Ctx, Endpoint, Origin, label, text};
use crate::cmd;
use crate::error::{Context, Error};

/// Where Debian's package puts the program.
const BINARY: &str = "/usr/sbin/pgbouncer";
const DEFAULT_PORT: u16 = 56432;
const VAR: &str = "REPOSMITH_TEST_PGBOUNCER_URL";
const REPLICA_VAR: &str = "REPOSMITH_TEST_PGBOUNCER_REPLICA_URL";
/// The pooler's name for the replica's `reposmith` database.
const REPLICA_DB: &str = "reposmith_replica";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// One `apt-get` run; a slow mirror takes minutes, never ten.
const APT_TIMEOUT: Duration = Duration::from_secs(600);
/// What a user without root runs instead of us.
const INSTALL: &str = "apt-get install -y pgbouncer";

/// Files of our PgBouncer, all under `<state>/pgbouncer`.
struct Paths {
    dir: PathBuf,
    ini: PathBuf,
    userlist: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
    record: PathBuf,
}

impl Paths {
    fn new(ctx: &Ctx) -> Self {
        let dir = ctx.dir().join("pgbouncer");
        Self {
            ini: dir.join("pgbouncer.ini"),
            userlist: dir.join("userlist.txt"),
            log: dir.join("pgbouncer.log"),
            pid_file: dir.join("pgbouncer.pid"),
            record: ctx.dir().join("pgbouncer.state"),
            dir,
        }
    }

    /// True when `pid` is a pgbouncer reading our ini.
    fn owns(&self, pid: u32) -> bool {
        process::is_ours(pid, &["pgbouncer", &text(&self.ini)])
    }
}

/// Where the pooler sends each database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backends {
    primary: u16,
    replica: Option<u16>,
}

/// The ini. Transaction pooling, as production runs it in front of many
/// application processes, so tests meet its limits: no session state
/// between transactions, and only `extra_float_digits` among the startup
/// parameters it does not know — a client sending `options` (e.g.
/// `-c statement_timeout=...`) is refused, on purpose. No reset query:
/// in transaction mode a server is handed on at each transaction's end.
/// No Unix socket: two workspaces' poolers would race for the one in `/tmp`.
fn render_ini(port: u16, backends: Backends, paths: &Paths) -> String {
    let mut databases = format!(
        "reposmith = host=127.0.0.1 port={} dbname=reposmith\n",
        backends.primary
    );
    if let Some(replica) = backends.replica {
        databases.push_str(&format!(
            "{REPLICA_DB} = host=127.0.0.1 port={replica} dbname=reposmith\n"
        ));
    }
    format!(
        "; written by `cargo xtask services up --pgbouncer`\n\
         [databases]\n{databases}\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {}\n\
         admin_users = postgres\n\
         pool_mode = transaction\n\
         default_pool_size = 20\n\
         max_client_conn = 500\n\
         ignore_startup_parameters = extra_float_digits\n\
         server_reset_query =\n\
         logfile = {}\n\
         pidfile = {}\n",
        text(&paths.userlist),
        text(&paths.log),
        text(&paths.pid_file)
    )
}

/// The one user, with the project's password in plain text: PgBouncer
/// checks the client's SCRAM proof against it and logs into Postgres with it.
fn render_userlist() -> String {
    format!("\"postgres\" \"{PASSWORD}\"\n")
}

/// `postgres://postgres:<password>@127.0.0.1:<port>/<db>`.
fn url(port: u16, db: &str) -> String {
    format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/{db}")
}

/// Brings our PgBouncer up (reloading it when the backends moved); `None`
/// (with a line saying why) when the primary is the user's.
pub(super) fn up(ctx: &Ctx) -> Result<Option<Endpoint>, Error> {
    let backends = match postgres::managed_primary(ctx) {
        Ok(primary) => Backends {
            primary,
            replica: postgres::replica_port(ctx),
        },
        Err(why) => {
            println!("{}skipped: PgBouncer {why}", label("pgbouncer"));
            return Ok(None);
        }
    };
    let paths = Paths::new(ctx);
    if let Some((pid, port)) = live(&paths) {
        reload_if_changed(&paths, pid, port, backends)?;
        return Ok(Some(endpoint(pid, port, false, backends.replica)));
    }
    ensure_installed(ctx, &paths)?;
    let recorded = Record::load(&paths.record).and_then(|r| r.number("port"));
    let port = process::pick_port(&[recorded.unwrap_or(DEFAULT_PORT), DEFAULT_PORT])?;
    let pid = start(ctx, &paths, port, backends)?;
    save(&paths, pid, port, backends)?;
    Ok(Some(endpoint(pid, port, true, backends.replica)))
}

fn endpoint(pid: u32, port: u16, fresh: bool, replica: Option<u16>) -> Endpoint {
    let replica = replica.map(|_| (REPLICA_VAR, url(port, REPLICA_DB)));
    Endpoint {
        name: "pgbouncer",
        var: VAR,
        url: url(port, "reposmith"),
        origin: Origin::Managed { pid, fresh },
        extra: replica.into_iter().collect(),
    }
}

fn save(paths: &Paths, pid: u32, port: u16, backends: Backends) -> Result<(), Error> {
    let mut record = Record::default()
        .with("port", port)
        .with("pid", pid)
        .with("primary_port", backends.primary)
        .with("ini", text(&paths.ini))
        .with("log", text(&paths.log));
    if let Some(replica) = backends.replica {
        record = record.with("replica_port", replica);
    }
    record.save(&paths.record)
}

/// Our recorded PgBouncer's pid and port, when it still runs.
fn live(paths: &Paths) -> Option<(u32, u16)> {
    let record = Record::load(&paths.record)?;
    let (pid, port) = (record.number("pid")?, record.number("port")?);
    paths.owns(pid).then_some((pid, port))
}

/// A running pooler whose ini names other backends (the replica started
/// since, or a server on a new port) re-reads it on SIGHUP; its clients
/// stay connected.
fn reload_if_changed(paths: &Paths, pid: u32, port: u16, backends: Backends) -> Result<(), Error> {
    let ini = render_ini(port, backends, paths);
    if fs::read_to_string(&paths.ini).is_ok_and(|old| old == ini) {
        return Ok(());
    }
    fs::write(&paths.ini, ini).context(format!("cannot write {}", paths.ini.display()))?;
    process::signal(&[pid], "HUP");
    println!(
        "{}reloaded its ini (the backends moved)",
        label("pgbouncer")
    );
    save(paths, pid, port, backends)
}

/// Writes the ini and userlist, hands them to the OS user and starts
/// `pgbouncer -d` (it forks and writes its pid file); returns its pid once
/// it accepts connections.
fn start(ctx: &Ctx, paths: &Paths, port: u16, backends: Backends) -> Result<u32, Error> {
    fs::create_dir_all(&paths.dir).context(format!("cannot create {}", paths.dir.display()))?;
    fs::write(&paths.ini, render_ini(port, backends, paths))
        .context(format!("cannot write {}", paths.ini.display()))?;
    write_private(&paths.userlist, &render_userlist())
        .context(format!("cannot write {}", paths.userlist.display()))?;
    // A pid file left by a killed pooler would make the new one refuse to start.
    let _ = fs::remove_file(&paths.pid_file);
    let user = OsUser::new(ctx);
    user.prepare(&[paths.dir.as_path()], &paths.dir)?;
    let mut pgbouncer = user.command(Path::new(BINARY), &paths.dir);
    pgbouncer.arg("-d").arg(&paths.ini);
    let status = cmd::run_logged(&mut pgbouncer, &paths.dir.join("start.log"), READY_TIMEOUT)?;
    let failed = |why: &str| Error::msg(format!("pgbouncer: {why}\n{}", log_tail(&paths.log, 30)));
    if !status.success() {
        return Err(failed("pgbouncer -d failed to start"));
    }
    let ready = || {
        pid_from_file(paths).is_some_and(|pid| paths.owns(pid))
            && process::tcp_reachable("127.0.0.1", port, Duration::from_secs(1))
    };
    if !process::wait_until(READY_TIMEOUT, ready) {
        if let Some(pid) = pid_from_file(paths).filter(|pid| paths.owns(*pid)) {
            process::stop(&[pid]);
        }
        return Err(failed(&format!("not listening on port {port} within 10 s")));
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

/// Debian's package when the program is missing: installed by us as root,
/// or an error saying what to run.
fn ensure_installed(ctx: &Ctx, paths: &Paths) -> Result<(), Error> {
    if Path::new(BINARY).is_file() {
        return Ok(());
    }
    if !ctx.as_root {
        return Err(Error::msg(format!(
            "pgbouncer: {BINARY} not found; install it (Debian/Ubuntu: `sudo {INSTALL}`) \
             and run this again"
        )));
    }
    fs::create_dir_all(&paths.dir).context(format!("cannot create {}", paths.dir.display()))?;
    let log = paths.dir.join("apt.log");
    println!(
        "{}installing Debian's package ({INSTALL}; log: {})",
        label("pgbouncer"),
        log.display()
    );
    let installed = {
        let _no_start = NoServiceStart::new();
        // An empty or stale package list knows no pgbouncer: refresh it once.
        apt(&["install", "-y", "pgbouncer"], &log)
            || (apt(&["update"], &log) && apt(&["install", "-y", "pgbouncer"], &log))
    };
    disable_packaged_service(&log);
    if installed && Path::new(BINARY).is_file() {
        return Ok(());
    }
    Err(Error::msg(format!(
        "pgbouncer: `{INSTALL}` failed; run it yourself and try again\n{}",
        log_tail(&log, 20)
    )))
}

/// One `apt-get` run, non-interactive, waiting a while for another apt's lock.
fn apt(args: &[&str], log: &Path) -> bool {
    cmd::apt_get(args, log, APT_TIMEOUT)
}

/// While it lives, `/usr/sbin/policy-rc.d` answers 101 ("action forbidden"),
/// which `invoke-rc.d` and `deb-systemd-invoke` obey: the package's
/// postinst then does not start its service on 6432. A policy that was
/// there already (containers often have this very one) is left as it is.
struct NoServiceStart {
    written: Option<PathBuf>,
}

impl NoServiceStart {
    fn new() -> Self {
        let path = PathBuf::from("/usr/sbin/policy-rc.d");
        let script =
            "#!/bin/sh\n# cargo xtask: no service starts while pgbouncer installs\nexit 101\n";
        // Ours, left by an install that was killed before it could remove
        // it: taken over, so it goes when this one ends.
        if fs::read_to_string(&path).is_ok_and(|text| text == script) {
            return Self {
                written: Some(path),
            };
        }
        if path.exists() {
            return Self { written: None };
        }
        let written = fs::write(&path, script)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)))
            .is_ok();
        Self {
            written: written.then_some(path),
        }
    }
}

impl Drop for NoServiceStart {
    fn drop(&mut self) {
        if let Some(path) = &self.written {
            let _ = fs::remove_file(path);
        }
    }
}

/// After our install, the packaged service neither runs nor starts at boot
/// (a policy we did not write may have let it start): ours is the one the
/// project uses, and a second pooler on 6432 would only confuse.
fn disable_packaged_service(log: &Path) {
    let quietly = |program: &str, args: &[&str]| {
        let mut command = Command::new(program);
        command.args(args);
        let _ = cmd::run_logged(&mut command, log, Duration::from_secs(30));
    };
    if Path::new("/run/systemd/system").is_dir() {
        quietly("systemctl", &["disable", "--now", "pgbouncer.service"]);
    } else if Path::new("/etc/init.d/pgbouncer").is_file() {
        quietly("/etc/init.d/pgbouncer", &["stop"]);
        quietly("update-rc.d", &["pgbouncer", "disable"]);
    }
}

/// Running or stopped; the replica's URL only while the replica it points
/// at runs.
pub(super) fn status(ctx: &Ctx) -> Result<Endpoint, String> {
    let paths = Paths::new(ctx);
    let Some((pid, port)) = live(&paths) else {
        return Err("stopped".to_owned());
    };
    if !process::tcp_reachable("127.0.0.1", port, Duration::from_secs(3)) {
        return Err(format!("stuck (pid {pid}, port {port} not answering)"));
    }
    let pointed = Record::load(&paths.record).and_then(|r| r.number::<u16>("replica_port"));
    let replica = pointed.filter(|port| postgres::replica_port(ctx) == Some(*port));
    Ok(endpoint(pid, port, false, replica))
}

/// Stops our PgBouncer (SIGTERM: it closes every connection at once).
pub(super) fn down(ctx: &Ctx) -> Result<Vec<String>, Error> {
    let paths = Paths::new(ctx);
    let line = match live(&paths) {
        Some((pid, _)) => match process::stop(&[pid]) {
            true => format!("killed after 10 s (pid {pid})"),
            false => format!("stopped (pid {pid})"),
        },
        None => "not running, nothing to stop".to_owned(),
    };
    Ok(vec![format!("{}{line}", label("pgbouncer"))])
}

/// Writes `text` to a new file only its owner may read (0600 from the
/// start: the userlist holds a password in plain text).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        let dir = PathBuf::from("/s/pgbouncer");
        Paths {
            ini: dir.join("pgbouncer.ini"),
            userlist: dir.join("userlist.txt"),
            log: dir.join("pgbouncer.log"),
            pid_file: dir.join("pgbouncer.pid"),
            record: PathBuf::from("/s/pgbouncer.state"),
            dir,
        }
    }

    /// The `[pgbouncer]` settings as `key = value` pairs.
    fn settings(ini: &str) -> Vec<(String, String)> {
        let section = ini.split("[pgbouncer]").nth(1).unwrap();
        section
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }

    #[test]
    fn the_ini_pools_transactions_and_ignores_only_extra_float_digits() {
        let backends = Backends {
            primary: 55432,
            replica: None,
        };
        let ini = render_ini(56432, backends, &paths());
        let settings = settings(&ini);
        let get = |key: &str| {
            let found = settings.iter().find(|(k, _)| k == key);
            found.map(|(_, v)| v.as_str()).unwrap()
        };
        assert_eq!(get("pool_mode"), "transaction");
        assert_eq!(get("ignore_startup_parameters"), "extra_float_digits");
        assert_eq!(get("server_reset_query"), "");
        assert_eq!(get("listen_port"), "56432");
        assert_eq!(get("listen_addr"), "127.0.0.1");
        assert_eq!(get("pidfile"), "/s/pgbouncer/pgbouncer.pid");
        assert_eq!(get("auth_file"), "/s/pgbouncer/userlist.txt");
        assert!(ini.contains("reposmith = host=127.0.0.1 port=55432 dbname=reposmith\n"));
        assert!(!ini.contains(REPLICA_DB));
    }

    #[test]
    fn the_replica_gets_a_database_entry_while_it_runs() {
        let backends = Backends {
            primary: 55432,
            replica: Some(55433),
        };
        let ini = render_ini(56432, backends, &paths());
        let databases = ini.split("[pgbouncer]").next().unwrap();
        assert!(
            databases.contains("reposmith_replica = host=127.0.0.1 port=55433 dbname=reposmith\n")
        );
        let endpoint = endpoint(1, 56432, true, backends.replica);
        let vars = endpoint.vars();
        assert!(
            vars.iter()
                .any(|(k, v)| k == REPLICA_VAR && v.ends_with(":56432/reposmith_replica"))
        );
        assert!(
            vars.iter()
                .any(|(k, v)| k == VAR && v.ends_with(":56432/reposmith"))
        );
    }

    #[test]
    fn the_userlist_quotes_the_user_and_password() {
        assert_eq!(render_userlist(), format!("\"postgres\" \"{PASSWORD}\"\n"));
    }
}
