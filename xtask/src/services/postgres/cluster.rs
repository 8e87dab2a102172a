//! The Postgres programs from the wheel: `initdb`, `pg_ctl`, `pg_isready`,
//! `psql`, run as the right OS user.
//!
//! Postgres refuses to run as root, so a root caller runs them as the
//! `postgres` OS user through `runuser`, created when missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{MAX_CONNECTIONS, PASSWORD, Paths};
use crate::cmd;
use crate::error::{Context, Error};
use crate::services::process::{self, log_tail};
use crate::services::{Ctx, state, text};

/// Creates the `reposmith` database once and pgvector in it, and sets the
/// password on every start so a cluster made by an older xtask matches the URL.
fn setup_sql() -> String {
    format!(
        "ALTER ROLE postgres PASSWORD '{PASSWORD}';\n\
         SELECT 'CREATE DATABASE reposmith' WHERE NOT EXISTS \
         (SELECT FROM pg_database WHERE datname = 'reposmith')\\gexec\n\
         \\connect reposmith\n\
         CREATE EXTENSION IF NOT EXISTS vector;\n"
    )
}

/// Who runs the Postgres programs (and PgBouncer, which refuses root too):
/// us, or `postgres` when we are root.
pub(in crate::services) struct OsUser {
    pub(in crate::services) name: String,
    via_runuser: bool,
}

impl OsUser {
    pub(in crate::services) fn new(ctx: &Ctx) -> Self {
        if ctx.as_root {
            let name = "postgres".to_owned();
            return Self {
                name,
                via_runuser: true,
            };
        }
        let me = cmd::capture(Command::new("id").arg("-un"), Duration::from_secs(5));
        let name = me.unwrap_or_else(|| "unknown".to_owned());
        Self {
            name,
            via_runuser: false,
        }
    }

    /// `program` ready to run as this user, from `dir` (the `postgres` user
    /// cannot enter `/root/...`, so never from our own working directory).
    pub(in crate::services) fn command(&self, program: &Path, dir: &Path) -> Command {
        let mut command = if self.via_runuser {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", &self.name, "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        command.current_dir(dir);
        command
    }

    /// Creates `dirs`; as root also the `postgres` user when missing, and
    /// hands it the directories. Setup commands log to `log_dir`.
    pub(in crate::services) fn prepare(&self, dirs: &[&Path], log_dir: &Path) -> Result<(), Error> {
        for dir in dirs {
            fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
        }
        if !self.via_runuser {
            return Ok(());
        }
        if !state::user_exists("postgres") {
            println!(
                "postgres: creating the system user `postgres` (Postgres refuses to run as root)"
            );
            let mut useradd = Command::new("useradd");
            useradd.args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "postgres",
            ]);
            run_checked(&mut useradd, &log_dir.join("useradd.log"))?;
        }
        for dir in dirs {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:"]).arg(dir);
            run_checked(&mut chown, &log_dir.join("chown.log"))?;
        }
        Ok(())
    }
}

/// One cluster: its files, its binaries, its OS user.
pub(super) struct Cluster<'a> {
    pub(super) paths: &'a Paths,
    pub(super) bin: PathBuf,
    pub(super) user: OsUser,
}

impl Cluster<'_> {
    /// `program` from the wheel, ready to run as our OS user, from the
    /// cluster's directory.
    pub(super) fn command(&self, program: &str) -> Command {
        self.user.command(&self.bin.join(program), &self.paths.dir)
    }

    /// Runs `command`, logging to `log_name`; its log's tail on failure.
    fn run(&self, command: &mut Command, log_name: &str) -> Result<(), Error> {
        run_checked(command, &self.paths.dir.join(log_name))
    }

    /// The server's log tail under a one-line reason, named after its
    /// directory (`postgres`, `postgres-replica`).
    pub(super) fn failure(&self, what: &str) -> Error {
        let name = self.paths.dir.file_name().unwrap_or_default();
        Error::msg(format!(
            "{}: {what}\n{}",
            name.to_string_lossy(),
            log_tail(&self.paths.log, 30)
        ))
    }

    /// As root: the `postgres` user exists and owns the cluster's files.
    pub(super) fn prepare_dirs(&self) -> Result<(), Error> {
        let dirs = [self.paths.dir.as_path(), self.paths.socket_dir.as_path()];
        self.user.prepare(&dirs, &self.paths.dir)
    }

    /// Creates the cluster once. Password auth on TCP (trust only on the
    /// socket) lets tests check that a wrong password is refused; the C
    /// locale sorts the same on every machine.
    pub(super) fn initdb(&self) -> Result<(), Error> {
        if self.paths.data.join("PG_VERSION").exists() {
            return Ok(());
        }
        let pwfile = self.paths.dir.join("pwfile");
        fs::write(&pwfile, format!("{PASSWORD}\n"))?;
        let mut initdb = self.command("initdb");
        initdb.arg("-D").arg(&self.paths.data);
        initdb.args(["-U", "postgres", "-E", "UTF8", "--no-locale"]);
        initdb.args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
        initdb.arg(format!("--pwfile={}", text(&pwfile)));
        println!("postgres: initdb {}", self.paths.data.display());
        let result = self.run(&mut initdb, "initdb.log");
        let _ = fs::remove_file(&pwfile);
        result
    }

    /// `pg_ctl start`, waiting for the server. No `synchronous_commit=off`:
    /// crash tests need acknowledged commits to survive a killed server;
    /// `fsync=off` only loses data when the machine crashes, which no test
    /// does. A replica's slot that nobody reads keeps WAL from being
    /// recycled; the cap lets a forgotten one cost at most that much disk
    /// (past it the slot is lost, and `up --replica` rebuilds the replica).
    pub(super) fn start(&self, port: u16) -> Result<(), Error> {
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k '{}' -c max_connections={MAX_CONNECTIONS} \
             -c fsync=off -c full_page_writes=off -c max_slot_wal_keep_size=2GB",
            text(&self.paths.socket_dir)
        );
        self.pg_ctl_start(&["-o", &options])
    }

    /// `pg_ctl start` with `extra` arguments, waiting up to a minute.
    pub(super) fn pg_ctl_start(&self, extra: &[&str]) -> Result<(), Error> {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.paths.data)
            .arg("-l")
            .arg(&self.paths.log);
        pg_ctl.args(["-w", "-t", "60"]).args(extra).arg("start");
        let log = self.paths.dir.join("pg_ctl.log");
        match cmd::run_logged(&mut pg_ctl, &log, Duration::from_secs(90)) {
            Ok(status) if status.success() => Ok(()),
            Ok(_) => Err(self.failure("pg_ctl start failed")),
            Err(err) => Err(self.failure(&err.to_string())),
        }
    }

    /// A live postmaster may still be recovering: give it the same minute as
    /// a fresh start before calling it broken.
    pub(super) fn wait_ready(&self, port: u16) -> Result<(), Error> {
        let ready = || {
            let mut isready = self.command("pg_isready");
            isready.arg("-h").arg(&self.paths.socket_dir);
            isready.args(["-p", &port.to_string(), "-t", "3", "-q"]);
            cmd::run_quiet(&mut isready, Duration::from_secs(5))
        };
        if process::wait_until(Duration::from_secs(60), ready) {
            return Ok(());
        }
        Err(self.failure("running but not accepting connections after 60 s"))
    }

    /// The `reposmith` database with pgvector, over the Unix socket, where
    /// local connections are trusted and no password is needed.
    pub(super) fn create_database(&self, port: u16) -> Result<(), Error> {
        let sql = self.paths.dir.join("setup.sql");
        fs::write(&sql, setup_sql()).context(format!("cannot write {}", sql.display()))?;
        let mut psql = self.command("psql");
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
            .arg(&self.paths.socket_dir)
            .args(["-p", &port.to_string()]);
        self.run(psql.arg("-f").arg(&sql), "setup.log")
    }

    /// The rows of `sql` (unaligned, `|` between columns) run in database
    /// `postgres` over the Unix socket; an error with psql's message when
    /// it fails.
    pub(super) fn query(&self, port: u16, sql: &str) -> Result<String, Error> {
        let mut psql = self.command("psql");
        psql.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres"]);
        psql.args(["-d", "postgres", "-p", &port.to_string(), "-c", sql]);
        psql.arg("-h").arg(&self.paths.socket_dir);
        // Rows to a file of their own (written by the OS user, so in its
        // directory), messages to the log shown on failure.
        let rows = self.paths.dir.join("query.out");
        let _ = fs::remove_file(&rows);
        psql.arg("-o").arg(&rows);
        run_checked(&mut psql, &self.paths.dir.join("query.log"))?;
        let text = fs::read_to_string(&rows).context(format!("cannot read {}", rows.display()))?;
        Ok(text.trim().to_owned())
    }

    /// Fast shutdown; immediate when clients hold it up; SIGKILL last, and
    /// only to a pid that is still our postmaster.
    pub(super) fn stop(&self, pid: u32) -> Result<(), Error> {
        for (mode, wait) in [("fast", "30"), ("immediate", "10")] {
            let mut pg_ctl = self.command("pg_ctl");
            pg_ctl.arg("-D").arg(&self.paths.data);
            pg_ctl.args(["stop", "-m", mode, "-w", "-t", wait]);
            let log = self.paths.dir.join("pg_ctl.log");
            let _ = cmd::run_logged(&mut pg_ctl, &log, Duration::from_secs(45));
            if !process::alive(pid) {
                return Ok(());
            }
        }
        if self.paths.owns(pid) {
            let mut pids = process::descendants(pid);
            pids.push(pid);
            process::signal(&pids, "KILL");
        }
        if process::wait_until(Duration::from_secs(5), || !process::alive(pid)) {
            return Ok(());
        }
        Err(self.failure(&format!("pid {pid} did not stop")))
    }
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
