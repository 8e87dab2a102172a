//! A PostgreSQL server of a test's own, from the project's wheel binaries:
//! fault tests restart it immediately, stop it for seconds and `kill -9`
//! it, which the shared server every other test uses must never see. Its
//! own data directory (fsync on, as in production) and port; trust
//! auth on loopback; stopped and removed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use std::os::unix::fs::PermissionsExt;

use crate::pg_replica::{self, as_os_user_from, euid, os_user, pg_ctl_from};
use crate::{server_port, unique_name};

/// Longest wait for `initdb`, a start, a stop.
const WITHIN: Duration = Duration::from_secs(60);

/// A running server of the test's own.
#[derive(Debug)]
pub struct OwnPostgres {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    /// The binaries it runs: the wheel's unless [`ServerOptions::bin_dir`].
    bin: PathBuf,
    /// `-c name=value` settings after the defaults.
    settings: Vec<(String, String)>,
}

/// What [`OwnPostgres::start_with`] changes from [`OwnPostgres::start`].
#[derive(Debug, Default, Clone)]
pub struct ServerOptions {
    /// PostgreSQL binaries other than the wheel's (`REPOSMITH_PG_BIN_DIR`):
    /// the wheel's are built without OpenSSL, so a TLS test runs Debian's.
    pub bin_dir: Option<PathBuf>,
    /// Files written into the data directory after `initdb`, owned by the
    /// server's OS user with mode 0600 (PostgreSQL refuses a key file
    /// others can read): certificates and keys, named relative to it.
    pub files: Vec<(String, Vec<u8>)>,
    /// `-c name=value` settings after the defaults (a later one wins:
    /// `listen_addresses`, say). Values must not hold spaces.
    pub settings: Vec<(String, String)>,
}

impl OwnPostgres {
    /// A new cluster (initdb, 2 to 3 s here), started. `None` only where
    /// xtask says the project's PostgreSQL binaries are not ours to run
    /// (beside the user's own server); otherwise a failure is a panic.
    pub fn start() -> Option<OwnPostgres> {
        OwnPostgres::start_with(ServerOptions::default())
    }

    /// Like [`OwnPostgres::start`], with other binaries, files in the data
    /// directory and extra settings ([`ServerOptions`]).
    pub fn start_with(options: ServerOptions) -> Option<OwnPostgres> {
        if std::env::var("REPOSMITH_PG_BIN_DIR").is_err() {
            pg_replica::required("REPOSMITH_PG_BIN_DIR")?;
        }
        let dir = std::env::temp_dir().join(unique_name("reposmith-own-pg"));
        fs::create_dir_all(&dir).expect("create the server's directory");
        hand_to_os_user(&dir);
        let server = OwnPostgres {
            data: dir.join("data"),
            port: server_port(),
            dir,
            bin: options.bin_dir.unwrap_or_else(pg_replica::bin_dir),
            settings: options.settings,
        };
        let mut initdb = as_os_user_from(&server.bin, "initdb", &server.dir);
        initdb.arg("-D").arg(&server.data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "--locale=C",
        ]);
        pg_replica::run(initdb, WITHIN);
        for (name, contents) in &options.files {
            let path = server.data.join(name);
            fs::write(&path, contents).expect("write a file into the data directory");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .expect("chmod 600 a file of the data directory");
            hand_to_os_user(&path);
        }
        server.start_again();
        Some(server)
    }

    /// The server's port on 127.0.0.1 (and any other `listen_addresses`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_again(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=60",
            self.port,
            self.dir.display()
        );
        for (name, value) in &self.settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let wait = WITHIN.as_secs().to_string();
        let mut start = pg_ctl_from(&self.bin, &self.data);
        start
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", &wait, "-o", &options, "start"]);
        pg_replica::run(start, WITHIN + Duration::from_secs(10));
    }

    /// `pg_ctl stop -m fast`: sessions ended, a clean shutdown.
    pub fn stop(&self) {
        self.pg_ctl_stop("fast");
    }

    /// `pg_ctl restart -m immediate`: every session dies at once and the
    /// server recovers from its WAL, as after a crash.
    pub fn restart_immediately(&self) {
        self.pg_ctl_stop("immediate");
        self.start_again();
    }

    /// `kill -9` of the postmaster and every backend: the server crashed
    /// (the operating system's page cache survives: not a power loss). Start it again with
    /// [`OwnPostgres::start_again`] (crash recovery replays the WAL).
    pub fn kill_9(&self) {
        let pid_file = fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        let postmaster: u32 = pid_file
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .expect("a running server has a postmaster.pid");
        // Its children collected before anything dies (a killed
        // postmaster's children would be reparented).
        let mut victims = children_of(postmaster);
        victims.push(postmaster);
        // Its status is not checked: a backend may exit on its own between
        // the listing and the signal; the wait below is the check.
        let _ = Command::new("kill")
            .arg("-9")
            .args(victims.iter().map(u32::to_string))
            .status();
        // The shared memory is free once every process is gone.
        for _ in 0..500 {
            if victims.iter().all(|&pid| gone(pid)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("processes {victims:?} survived kill -9");
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let wait = WITHIN.as_secs().to_string();
        let mut stop = pg_ctl_from(&self.bin, &self.data);
        stop.args(["stop", "-m", mode, "-w", "-t", &wait]);
        pg_replica::run(stop, WITHIN + Duration::from_secs(10));
    }

    /// The server's whole log so far (with `log_statement = all`, every
    /// statement text it received).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join("postgres.log")).unwrap_or_default())
            .into_owned()
    }

    /// The server's log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        pg_replica::tail(&self.dir.join("postgres.log"))
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let mut stop = pg_ctl_from(&self.bin, &self.data);
        stop.args(["stop", "-m", "immediate", "-w", "-t", "10"]);
        let _ = stop.status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether process `pid` is gone from `/proc`: exited and reaped. A
/// zombie still counts as there, because a restart's check of
/// `postmaster.pid` takes a zombie's pid for a live postmaster.
/// Whether `pid` is no longer listed. A zombie still counts as running:
/// PostgreSQL's lock-file check (`kill(pid, 0)`) sees it as a live
/// postmaster, so a restart must wait until it is reaped. Orphans are
/// reaped by PID 1, which on some machines does so only about once a
/// second, hence the ten-second bound in [`OwnPostgres::kill_9`].
fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// The pids whose parent is `parent`, from `/proc/<pid>/stat`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// As root, the OS user the servers run as must own the directory.
fn hand_to_os_user(dir: &Path) {
    if euid() != 0 || os_user() == "root" {
        return;
    }
    let status = Command::new("chown")
        .arg(format!("{}:", os_user()))
        .arg(dir)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {} failed", dir.display());
}
