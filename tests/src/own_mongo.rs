//! A SecantusDB server (the MongoDB wire-protocol server the suite runs
//! against) of a test's own: fault tests `kill -9` it mid-traffic and start
//! it again on the same port and data directory, which the shared server on
//! `MONGODB_URL` must never see. It runs the way xtask runs the shared one
//! (`secantusd-py` from the services venv, a single-node replica set named
//! `secantus`, so units of work have transactions), on a free loopback port,
//! in a temporary directory removed on drop.
//!
//! # Durability
//!
//! SecantusDB stores its data in WiredTiger with the journal on, but by
//! default a commit only hands its journal record to WiredTiger's log
//! buffer: nothing is flushed before the reply, and the server ignores the
//! write concern of `commitTransaction` (`w: "majority"` on a single node is
//! `w: 1`). Measured here (SecantusDB 0.7.0b3, pymongo): 4 writers with
//! `w: "majority"` for 3 s, then `kill -9`: 42 of 9,048 acknowledged single
//! inserts and 15 of 2,719 acknowledged transactions were gone after the
//! restart; without the flag below, both `kill -9` tests of
//! `faults::mongo_server` failed 3 runs of 3 on a lost acknowledged write.
//! `j: true` makes a single write fsync first (0 lost), but not a
//! transaction: its commit ignores the write concern. mongod journals
//! every `w: "majority"` write before acknowledging it
//! (`writeConcernMajorityJournalDefault`), so [`OwnMongo::start`] starts the
//! server with `--sync-on-commit` (every commit fsyncs the journal first):
//! the durability a production MongoDB gives the same write concern, which
//! is what lets a test hold reposmith to "no acknowledged write lost".
//! [`OwnMongo::start_with`] can start it without, to see the server's
//! default.

use std::fs::{self, OpenOptions};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{server_port, unique_name};

/// The variable xtask sets to the venv's `secantusd-py`.
pub const SERVER_VAR: &str = "REPOSMITH_SECANTUSD";

/// Longest wait for a start (a journal replay after `kill -9` included; a
/// start takes 1 to 1.5 s here, a cold Python import cache much longer).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A line the server logs once it accepts connections.
const READY_LINE: &str = "listening";

/// A running server of the test's own.
#[derive(Debug)]
pub struct OwnMongo {
    program: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    sync_on_commit: bool,
    child: Mutex<Option<Child>>,
}

impl OwnMongo {
    /// A new server with an empty data directory, started with
    /// `--sync-on-commit` (see the module docs). `None` when
    /// [`SERVER_VAR`] is unset (the suite was not started by
    /// `cargo xtask test`, or from an environment file written before xtask
    /// exported it): the caller prints `not run here` and returns. A server
    /// that does not start is a panic.
    pub fn start() -> Option<OwnMongo> {
        OwnMongo::start_with(true)
    }

    /// [`OwnMongo::start`], with `--sync-on-commit` only when
    /// `sync_on_commit` is true.
    pub fn start_with(sync_on_commit: bool) -> Option<OwnMongo> {
        let program = PathBuf::from(std::env::var_os(SERVER_VAR)?);
        let dir = std::env::temp_dir().join(unique_name("reposmith-own-mongo"));
        fs::create_dir_all(&dir).expect("create the server's directory");
        let server = OwnMongo {
            program,
            data: dir.join("data"),
            log: dir.join("secantusd.log"),
            port: server_port(),
            dir,
            sync_on_commit,
            child: Mutex::new(None),
        };
        server.start_again();
        Some(server)
    }

    /// Why [`OwnMongo::start`] returned `None`, for the test's `not run
    /// here` line.
    pub fn missing() -> String {
        format!(
            "{SERVER_VAR} (the services venv's secantusd-py) is not set: run the suite with \
             `cargo xtask test`, or `eval \"$(cargo xtask services env)\"` after updating xtask"
        )
    }

    /// `mongodb://127.0.0.1:<port>/reposmith?directConnection=true`.
    pub fn url(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/reposmith?directConnection=true",
            self.port
        )
    }

    /// Starts the server (again) on the same port and data directory and
    /// waits until it accepts connections (after `kill -9`, WiredTiger
    /// replays its journal first). Panics with the log's tail when it exits
    /// or is not ready within a minute.
    pub fn start_again(&self) {
        let mut slot = self.child.lock().unwrap();
        assert!(slot.is_none(), "the server is already running");
        // Only what this start logs counts as ready.
        let seen = fs::metadata(&self.log).map_or(0, |m| m.len());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the server's log");
        let mut server = Command::new(&self.program);
        server
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&self.data);
        if self.sync_on_commit {
            server.arg("--sync-on-commit");
        }
        server
            .current_dir(&self.dir)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the server's log"))
            .stderr(log)
            // Its own group: kill_9 ends every process it may have started.
            .process_group(0);
        let mut child = server
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program.display()));
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "secantusd exited during start ({status})\n{}",
                    self.log_tail()
                );
            }
            let logged = fs::read(&self.log).unwrap_or_default();
            let new = logged.get(seen as usize..).unwrap_or_default();
            let said_ready = String::from_utf8_lossy(new).contains(READY_LINE);
            if said_ready && self.accepts() {
                break;
            }
            if started.elapsed() > READY_WITHIN {
                kill_group(&mut child);
                panic!(
                    "secantusd was not ready within {READY_WITHIN:?}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        *slot = Some(child);
    }

    /// `kill -9` of the server's process group: a crash, with no chance to
    /// flush or checkpoint anything (the operating system's page cache
    /// survives: not a power loss). Returns once it has exited; start it
    /// again with [`OwnMongo::start_again`].
    pub fn kill_9(&self) {
        let mut child = self
            .child
            .lock()
            .unwrap()
            .take()
            .expect("the server is running");
        kill_group(&mut child);
    }

    /// The last lines of the server's log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn accepts(&self) -> bool {
        let addr = ([127, 0, 0, 1], self.port).into();
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    }
}

/// SIGKILL to `child`'s process group (it leads one), then reaps it.
fn kill_group(child: &mut Child) {
    // Its status is not checked: the group may already be gone; the wait
    // below is the check.
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for OwnMongo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.get_mut().ok().and_then(Option::take) {
            kill_group(&mut child);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
