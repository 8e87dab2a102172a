//! `cargo xtask rag`: the RAG example's whole path, measured, then served.
//!
//! The model and the manual fetched ([`crate::rag_fetch`]), the services up,
//! the example's release binaries built; `rag-service` started on
//! `RAG_ADDR` (127.0.0.1:8080) with a fresh API key and limits no load run
//! reaches, against databases of its own (`reposmith_rag` in PostgreSQL and
//! MongoDB, created when missing) and Redis keys of its own (prefix
//! `reposmith_rag`, or `RAG_REDIS_PREFIX`); then `rag-load` ingests the manual
//! through the service's API, evaluates retrieval and measures search
//! throughput through it. The search page's URL with the key is printed and
//! the service runs until Ctrl-C (which reaches it too: it shuts down
//! gracefully), or stops at once with `--no-serve`.
//!
//! A second run finds the pages stored (the service answers 409 for a text
//! it holds) and skips them; `--fresh` drops and recreates the PostgreSQL
//! database first, so that the ingest is measured again.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Context, Error};
use crate::services::process::{self, log_tail};
use crate::services::url::{redact, with_database};
use crate::{cmd, rag_fetch, services, test};

/// The database the served example uses, in PostgreSQL and in MongoDB.
const DATABASE: &str = "reposmith_rag";
/// Where the service listens unless `RAG_ADDR` says otherwise.
const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Migrations applied and the model loaded: seconds, on a busy machine a minute.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// One `psql` statement.
const PSQL_TIMEOUT: Duration = Duration::from_secs(60);

/// What `cargo xtask rag` was asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    /// Only the first N pages of the manual.
    pub(crate) limit: Option<u32>,
    /// Seconds per throughput run.
    pub(crate) seconds: Option<u32>,
    /// Stop after the measurements instead of serving.
    pub(crate) no_serve: bool,
    /// Drop and recreate the PostgreSQL database first.
    pub(crate) fresh: bool,
}

impl Options {
    /// `[--limit N] [--seconds N] [--no-serve] [--fresh]`.
    pub(crate) fn parse(args: &[&str]) -> Result<Options, Error> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| {
                args.next()
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::msg(format!("`rag {name}` takes a positive number")))
            };
            match *arg {
                "--limit" => options.limit = Some(number("--limit")?),
                "--seconds" => options.seconds = Some(number("--seconds")?),
                "--no-serve" => options.no_serve = true,
                "--fresh" => options.fresh = true,
                other => {
                    return Err(Error::msg(format!(
                        "unknown `rag` option {other}: use `rag [--limit N] [--seconds N] \
                         [--no-serve] [--fresh]` or `rag fetch [--model] [--corpus]`"
                    )));
                }
            }
        }
        Ok(options)
    }
}

/// Runs it all; the loader's exit code is ours.
pub(crate) fn run(root: &Path, options: &Options) -> Result<ExitCode, Error> {
    let model = rag_fetch::fetch_model(root)?;
    let html = rag_fetch::fetch_corpus(root)?;
    let vars = services::up_for_child(root)?;
    let (database_url, mongodb_url) = databases(&vars, options.fresh)?;
    let mut build = test::cargo(
        root,
        &vars,
        &[
            "build",
            "--release",
            "-p",
            "reposmith-example-rag",
            "--bin",
            "rag-service",
            "--bin",
            "rag-load",
        ],
    );
    println!("\n==> {}", cmd::describe(&build));
    let built = cmd::run_inherit(&mut build, test::step_timeout())?;
    if !built.success() {
        return Ok(ExitCode::from(cmd::exit_code(built)));
    }
    let bin = release_dir(root);
    let addr = address()?;
    let key = api_key()?;
    let log = rag_fetch::rag_dir(root).join("service.log");
    let mut service = Command::new(bin.join("rag-service"));
    service
        .current_dir(root)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("DATABASE_URL", &database_url)
        .env("MONGODB_URL", &mongodb_url)
        .env("RAG_ADDR", addr.to_string())
        .env("RAG_API_KEYS", format!("you={key}"))
        .env("RAG_MODEL_DIR", &model)
        .env("RAG_MIGRATIONS_DIR", root.join("migrations/rag"))
        // Queues and limits of their own on a shared Redis: another service
        // on the default prefix would take this one's jobs.
        .env("RAG_REDIS_PREFIX", redis_prefix())
        // The loader's requests must never wait on a limit: a page is one
        // request of up to ~100 KB of text, the searches are thousands (the
        // limiter takes at most one token per microsecond: 60 M a minute).
        .env("RAG_REQUESTS_PER_MINUTE", "1000000")
        .env("RAG_TOKENS_PER_MINUTE", "50000000")
        .env("RAG_MAX_DOCUMENT_BYTES", (1024 * 1024).to_string())
        .env("RAG_MAX_BODY_BYTES", (2 * 1024 * 1024).to_string());
    println!(
        "\n==> rag-service on {addr} (DATABASE_URL {}, MONGODB_URL {}; log: {})",
        redact(&database_url),
        redact(&mongodb_url),
        log.display()
    );
    let running = Running::start(service, &log)?;
    running.wait_listening(addr)?;
    let mut load = Command::new(bin.join("rag-load"));
    load.current_dir(root)
        .args(["--url", &format!("http://{addr}")])
        .env("RAG_API_KEY", &key)
        .env("RAG_DOC_DIR", &html);
    if let Some(limit) = options.limit {
        load.args(["--limit", &limit.to_string()]);
    }
    if let Some(seconds) = options.seconds {
        load.args(["--seconds", &seconds.to_string()]);
    }
    println!("\n==> {}", cmd::describe(&load));
    let loaded = cmd::run_inherit(&mut load, test::step_timeout())?;
    if !loaded.success() {
        eprintln!(
            "rag-load failed; the service's log ends:\n{}",
            log_tail(&log, 20)
        );
        return Ok(ExitCode::from(cmd::exit_code(loaded)));
    }
    if options.no_serve {
        println!("\nrag: --no-serve: stopping the service");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "\nrag: the search page: http://{addr}/?key={key}\n\
         rag: the API takes the header x-api-key: {key}\n\
         rag: serving until Ctrl-C (log: {})",
        log.display()
    );
    running.serve_until_stopped()
}

/// The service's PostgreSQL and MongoDB URLs: the services' ones naming
/// [`DATABASE`], created in PostgreSQL when missing (dropped first when
/// `fresh`). MongoDB creates a database on first write.
fn databases(vars: &[(String, String)], fresh: bool) -> Result<(String, String), Error> {
    // A managed server's URL is in `vars`; the user's is in our environment.
    let var = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .ok_or_else(|| Error::msg(format!("services up gave no {name}")))
    };
    let (pg, mongo) = (var("DATABASE_URL")?, var("MONGODB_URL")?);
    let rename = |url: &str| {
        with_database(url, DATABASE).ok_or_else(|| {
            Error::msg(format!(
                "cannot name database {DATABASE} in {}: give a host:port URL",
                redact(url)
            ))
        })
    };
    let psql = psql_program(vars);
    if fresh {
        println!("rag: --fresh: dropping database {DATABASE}");
        psql_run(
            &psql,
            &pg,
            &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
        )?;
    }
    let exists = format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'");
    if psql_capture(&psql, &pg, &exists)?.is_empty() {
        println!("rag: creating database {DATABASE}");
        psql_run(&psql, &pg, &format!("CREATE DATABASE {DATABASE}"))?;
    }
    Ok((rename(&pg)?, rename(&mongo)?))
}

/// `psql` from the managed server's binaries when there is one, else the
/// `PATH`'s.
fn psql_program(vars: &[(String, String)]) -> PathBuf {
    let dir = vars
        .iter()
        .find(|(k, _)| k == "REPOSMITH_PG_BIN_DIR")
        .map(|(_, v)| PathBuf::from(v))
        .or_else(|| std::env::var_os("REPOSMITH_PG_BIN_DIR").map(PathBuf::from));
    dir.map(|d| d.join("psql"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

fn psql_command(psql: &Path, url: &str, sql: &str) -> Command {
    let mut command = Command::new(psql);
    command.args([
        "-X",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-c",
        sql,
    ]);
    command
}

/// Runs `sql` in the database of `url`; a failure says what to do by hand.
fn psql_run(psql: &Path, url: &str, sql: &str) -> Result<(), Error> {
    psql_capture(psql, url, sql).map(|_| ())
}

fn psql_capture(psql: &Path, url: &str, sql: &str) -> Result<String, Error> {
    cmd::capture(&mut psql_command(psql, url, sql), PSQL_TIMEOUT).ok_or_else(|| {
        Error::msg(format!(
            "`{} -c \"{sql}\"` failed on {}: run it yourself (or install psql) and try again",
            psql.display(),
            redact(url)
        ))
    })
}

/// `RAG_REDIS_PREFIX` when set, else [`DATABASE`].
fn redis_prefix() -> String {
    std::env::var("RAG_REDIS_PREFIX")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| DATABASE.to_owned())
}

/// `$CARGO_TARGET_DIR/release`, or the workspace's `target/release`.
fn release_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| root.join("target"), PathBuf::from);
    root.join(target).join("release")
}

/// `RAG_ADDR` or [`DEFAULT_ADDR`], which must be free.
fn address() -> Result<SocketAddr, Error> {
    let text = std::env::var("RAG_ADDR")
        .ok()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let addr: SocketAddr = text
        .trim()
        .parse()
        .map_err(|_| Error::msg(format!("RAG_ADDR {text:?} is not an ip:port address")))?;
    TcpListener::bind(addr).map_err(|e| {
        Error::msg(format!(
            "cannot listen on {addr} ({e}): something else is there; set RAG_ADDR to another ip:port"
        ))
    })?;
    Ok(addr)
}

/// 32 hex characters from the kernel's random source.
fn api_key() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for an API key")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The service process; stopped (SIGTERM, then SIGKILL) when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(mut command: Command, log: &Path) -> Result<Running, Error> {
        let out = File::create(log).context(format!("cannot create {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = command
            .spawn()
            .context(format!("cannot run `{}`", cmd::describe(&command)))?;
        Ok(Running {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Waits until `addr` takes connections, failing when the service exits
    /// or [`START_TIMEOUT`] passes.
    fn wait_listening(&self, addr: SocketAddr) -> Result<(), Error> {
        let started = Instant::now();
        let pid = self.child.id();
        let ready = || {
            !process::alive(pid)
                || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        };
        let waited = process::wait_until(START_TIMEOUT, ready);
        if waited && process::alive(pid) {
            println!(
                "rag: the service listens on {addr} after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        let why = match waited {
            true => "exited".to_owned(),
            false => format!("did not listen within {} s", START_TIMEOUT.as_secs()),
        };
        Err(Error::msg(format!(
            "rag-service {why}; its log ({}) ends:\n{}",
            self.log.display(),
            log_tail(&self.log, 20)
        )))
    }

    /// Waits for the service to exit: on Ctrl-C the terminal signals it
    /// and us together, and it shuts down gracefully by itself.
    fn serve_until_stopped(mut self) -> Result<ExitCode, Error> {
        let status = self.child.wait()?;
        if status.success() {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "rag-service stopped ({status}); its log ends:\n{}",
            log_tail(&self.log, 20)
        );
        Ok(ExitCode::from(cmd::exit_code(status)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            process::stop(&[self.child.id()]);
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(Options::parse(&[]).unwrap(), Options::default());
        let o =
            Options::parse(&["--limit", "40", "--no-serve", "--fresh", "--seconds", "5"]).unwrap();
        assert_eq!(
            o,
            Options {
                limit: Some(40),
                seconds: Some(5),
                no_serve: true,
                fresh: true
            }
        );
        assert!(Options::parse(&["--limit"]).is_err());
        assert!(Options::parse(&["--limit", "0"]).is_err());
        assert!(Options::parse(&["--serve"]).is_err());
    }

    #[test]
    fn keys_are_32_hex_characters_and_differ() {
        let (a, b) = (api_key().unwrap(), api_key().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
