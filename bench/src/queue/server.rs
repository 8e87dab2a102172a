//! The queue and cache benches' own redis-server: a free loopback port, a
//! temporary directory, nothing on disk, no eviction; killed and removed on
//! drop. Never the shared server on 6379, whose settings are not ours to
//! choose. The cache bench also pauses and kills one mid-run.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::Result;

/// Numbers the servers of one process, so each has a directory of its own.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// How long the server gets to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server did over a run: calls per command, CPU seconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    /// Calls by command name (lower case, as `INFO commandstats` names them).
    pub(crate) calls: std::collections::BTreeMap<String, u64>,
    /// Microseconds the server spent executing commands (a script's
    /// commands are inside its EVALSHA's time): steadier than CPU time on
    /// a busy machine, since it leaves out network I/O.
    pub(crate) command_us: u64,
    /// Server CPU seconds, user + system.
    pub(crate) cpu_s: f64,
}

impl Usage {
    /// One line: commands per job (commands under 0.01 per job left out)
    /// and server CPU microseconds per job.
    pub(crate) fn per_job(&self, jobs: usize) -> String {
        let jobs = jobs.max(1) as f64;
        let mut parts: Vec<String> = self
            .calls
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "info" | "config" | "flushall"))
            .map(|(name, n)| (name, *n as f64 / jobs))
            .filter(|(_, per)| *per >= 0.01)
            .map(|(name, per)| format!("{name} {per:.2}"))
            .collect();
        let total: f64 = self
            .calls
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "info" | "config" | "flushall"))
            .map(|(_, n)| *n as f64)
            .sum();
        parts.push(format!("= {:.2} commands", total / jobs));
        format!(
            "{}; redis-server: commands {:.1} µs/job, CPU {:.1} µs/job",
            parts.join(", "),
            self.command_us as f64 / jobs,
            self.cpu_s * 1e6 / jobs
        )
    }
}

/// A running redis-server child.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    dir: PathBuf,
    /// `redis://127.0.0.1:PORT/0`
    pub(crate) url: String,
}

impl Server {
    /// Starts redis-server from PATH and waits until it answers.
    pub(crate) async fn start() -> Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("reposmith-bench-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server (apt-get install redis-server): {e}")
            })?;
        let server = Self {
            child,
            dir,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> Result<()> {
        let client = redis::Client::open(self.url.as_str())?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(
                    format!("redis-server at {} not answering within 10 s", self.url).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `FLUSHALL`: every round starts on an empty server.
    pub(crate) async fn flush(&self) -> Result<()> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Zeroes the command counters (`CONFIG RESETSTAT`) and returns the
    /// server's CPU seconds so far (user + system), the start of a
    /// [`Usage`] measurement.
    pub(crate) async fn reset_usage(&self) -> Result<f64> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async::<()>(&mut conn)
            .await?;
        Ok(self.usage(0.0).await?.cpu_s)
    }

    /// Commands run since the last [`reset_usage`](Self::reset_usage) and
    /// CPU seconds since `cpu_then` (what it returned).
    pub(crate) async fn usage(&self, cpu_then: f64) -> Result<Usage> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await?;
        // cmdstat_evalsha:calls=40000,usec=123456,usec_per_call=...
        let mut calls = std::collections::BTreeMap::new();
        let mut command_us = 0;
        for line in info.lines().filter_map(|l| l.strip_prefix("cmdstat_")) {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            let field = |key: &str| -> Option<u64> {
                rest.split(',')
                    .find_map(|f| f.strip_prefix(key))
                    .and_then(|v| v.parse().ok())
            };
            if !matches!(name, "info" | "config" | "flushall") {
                command_us += field("usec=").unwrap_or(0);
            }
            calls.insert(name.to_owned(), field("calls=").unwrap_or(0));
        }
        let cpu: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await?;
        let seconds = |key: &str| -> f64 {
            cpu.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let cpu_s = seconds("used_cpu_user:") + seconds("used_cpu_sys:");
        Ok(Usage {
            calls,
            command_us,
            cpu_s: cpu_s - cpu_then,
        })
    }

    /// The server's `redis_version`, for the header.
    pub(crate) async fn version(&self) -> Result<String> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?");
        Ok(version.trim().to_owned())
    }
}

impl Server {
    /// Pauses the server (SIGSTOP): it keeps its connections and answers nothing.
    pub(crate) fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Kills the server (SIGKILL) and reaps it: its port refuses connections.
    pub(crate) fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()?;
        match status.success() {
            true => Ok(()),
            false => Err(format!("kill {signal} {} failed", self.child.id()).into()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
