//! A Redis server of a test's own: its settings (noeviction, AOF with fsync
//! on every write, `DEBUG` allowed from loopback) can be what the test
//! needs, and it can be stopped, restarted on the same port and data
//! directory (so the AOF is reloaded) and paused, without touching the
//! shared server on 6379.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{server_port, unique_name};

/// Longest wait for a started server to answer `PING` (an AOF reload is
/// part of it).
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A `redis-server` child process on a free loopback port, in a temporary
/// directory; killed and its directory removed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A queue-ready server: `maxmemory-policy noeviction`, `appendonly yes`,
    /// `appendfsync always`, no RDB snapshots.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A server with `extra` settings after the defaults (a later setting
    /// wins: `["--maxmemory-policy", "allkeys-lru"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = std::env::temp_dir().join(unique_name("reposmith-redis"));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let mut server = RedisServer {
            port: server_port(),
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (`SIGKILL`: no chance to write anything more, as in
    /// a crash) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port and directory;
    /// returns once it answers `PING` (its AOF loaded).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Sends `DEBUG SLEEP` on a connection of its own from a thread: the
    /// server answers nobody for `duration`. Returns at once; join the
    /// handle to wait for the end of the pause.
    pub fn pause(&self, duration: Duration) -> JoinHandle<()> {
        let port = self.port;
        let seconds = format!("{:.3}", duration.as_secs_f64());
        thread::spawn(move || {
            let reply = command(
                port,
                &["DEBUG", "SLEEP", &seconds],
                duration * 2 + READY_WITHIN,
            );
            assert!(
                reply.as_deref().is_ok_and(|r| r.starts_with("+OK")),
                "DEBUG SLEEP: {reply:?}"
            );
        })
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("server log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--maxmemory-policy", "noeviction", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--save", "", "--daemonize", "no"])
            .args(["--enable-debug-command", "local"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("server log"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start redis-server (is it on PATH?)"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < READY_WITHIN {
            if let Ok(reply) = command(self.port, &["PING"], Duration::from_secs(1))
                && reply.starts_with("+PONG")
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!("redis-server exited with {status}:\n{log}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING within {READY_WITHIN:?}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one command (RESP) and returns the first reply line.
fn command(port: u16, args: &[&str], wait: Duration) -> std::io::Result<String> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") && reply.len() < 512 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        reply.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
