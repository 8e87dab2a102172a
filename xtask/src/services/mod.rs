//! `cargo xtask services up|down|status|env`: the real servers that tests and
//! the demo talk to.
//!
//! Each service is reused when the user's environment names one
//! (`DATABASE_URL`, `MONGODB_URL`, `REDIS_URL`), otherwise started under the
//! state directory and recorded there, so `down` stops exactly what `up`
//! started and nothing else. `up --cluster` also starts a Redis Cluster
//! (see [`cluster`]), which otherwise only `cargo xtask test` starts.

mod cluster;
mod cluster_info;
mod mongo;
mod postgres;
pub(crate) mod process;
mod python;
mod redis;
mod state;
mod url;

use std::cell::OnceCell;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::error::Error;
use python::Venv;
use state::StateDir;

/// How long an external server named by an environment variable gets to
/// accept a TCP connection before we call it unreachable.
const EXTERNAL_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `services <sub> [flags]`; the one flag is `up --cluster`.
pub(crate) fn run(sub: &str, flags: &[&str], root: &Path) -> Result<ExitCode, Error> {
    let cluster = match (sub, flags) {
        (_, []) => false,
        ("up", ["--cluster"]) => true,
        _ => {
            return Err(Error::msg(format!(
                "unknown `services {sub} {}`: only `up` takes a flag, `--cluster`",
                flags.join(" ")
            )));
        }
    };
    let ctx = Ctx::new(root)?;
    match sub {
        "up" => up(&ctx).and_then(|_| up_cluster(&ctx, cluster)),
        "down" => down(&ctx),
        "status" => Ok(status(&ctx)),
        "env" => Ok(env(&ctx)),
        other => Err(Error::msg(format!(
            "unknown `services {other}`: use up, down, status or env"
        ))),
    }
}

/// The cluster, when asked for.
fn up_cluster(ctx: &Ctx, asked: bool) -> Result<ExitCode, Error> {
    if asked {
        println!("{}", cluster::up(ctx)?.describe());
    }
    Ok(ExitCode::SUCCESS)
}

/// What every service needs: where state lives and who we run as.
pub(crate) struct Ctx {
    state: StateDir,
    as_root: bool,
    venv: OnceCell<Venv>,
}

impl Ctx {
    fn new(root: &Path) -> Result<Self, Error> {
        let as_root = process::euid() == 0;
        let state = StateDir::resolve(root, as_root)?;
        Ok(Self {
            state,
            as_root,
            venv: OnceCell::new(),
        })
    }

    /// The state directory.
    fn dir(&self) -> &Path {
        &self.state.path
    }

    /// The venv, installed on first use only: nobody who sets both
    /// `DATABASE_URL` and `MONGODB_URL` needs Python.
    fn venv(&self) -> Result<&Venv, Error> {
        if let Some(venv) = self.venv.get() {
            return Ok(venv);
        }
        let venv = Venv::ensure(self.dir())?;
        Ok(self.venv.get_or_init(|| venv))
    }
}

/// Where a running service came from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// Started by xtask, now (`fresh`) or by an earlier `up`.
    Managed { pid: u32, fresh: bool },
    /// Named by the user's environment variable; never started or stopped.
    External,
    /// Already listening on the well-known port, not started by xtask.
    Shared,
}

/// A service that is up: its URL and how to talk about it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    name: &'static str,
    var: &'static str,
    url: String,
    origin: Origin,
    /// More variables for the environment, e.g. where Postgres' binaries are.
    extra: Vec<(&'static str, String)>,
}

impl Endpoint {
    /// One line for people: what runs where, password hidden.
    fn describe(&self) -> String {
        let how = match self.origin {
            Origin::Managed { pid, fresh: true } => format!("started (pid {pid})"),
            Origin::Managed { pid, fresh: false } => {
                format!("running (started by xtask, pid {pid})")
            }
            Origin::External => format!("external (from {})", self.var),
            Origin::Shared => "running (already there, not started by xtask)".to_owned(),
        };
        format!(
            "{:<10}{how} at {}",
            format!("{}:", self.name),
            url::redact(&self.url)
        )
    }

    /// The variables a child process needs; an external URL is already in
    /// the environment and is not repeated.
    fn vars(&self) -> Vec<(String, String)> {
        let own = match self.origin {
            Origin::External => None,
            _ => Some((self.var, self.url.clone())),
        };
        own.into_iter()
            .chain(self.extra.iter().cloned())
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }
}

/// A kind of server, and the variable by which a user names their own.
pub(crate) struct Service {
    name: &'static str,
    var: &'static str,
    /// The port a URL means when it names none.
    default_port: u16,
}

impl Service {
    /// The URL in the user's environment, unless it is one of `own`: after
    /// `eval "$(cargo xtask services env)"` the variable names our own
    /// server, which must stay ours (restartable, stoppable), not external.
    fn user_url(&self, own: &[String]) -> Option<String> {
        let url = std::env::var(self.var).ok()?;
        (!url.is_empty() && !own.contains(&url)).then_some(url)
    }

    /// The user's server, if they named one: reused when it accepts a
    /// connection, an error (password redacted) when it does not.
    fn external(&self, own: &[String]) -> Option<Result<Endpoint, Error>> {
        let url = self.user_url(own)?;
        let Self { name, var, .. } = *self;
        if !url::reachable(&url, self.default_port, EXTERNAL_TIMEOUT) {
            let shown = url::redact(&url);
            return Some(Err(Error::msg(format!(
                "{var} is set to {shown}, but nothing answers there within {} s: \
                 start that server, or unset {var} to let xtask start its own {name}",
                EXTERNAL_TIMEOUT.as_secs()
            ))));
        }
        let origin = Origin::External;
        Some(Ok(Endpoint {
            name,
            var,
            url,
            origin,
            extra: Vec::new(),
        }))
    }

    /// What `down` says about the user's server, if they named one.
    fn left_alone(&self, own: &[String]) -> Option<String> {
        self.user_url(own).map(|_| {
            let label = format!("{}:", self.name);
            format!(
                "{label:<10}left alone the server named by {} (not started by xtask)",
                self.var
            )
        })
    }
}

/// Brings every service up and returns the variables a child needs.
pub(crate) fn up_for_child(root: &Path) -> Result<Vec<(String, String)>, Error> {
    let ctx = Ctx::new(root)?;
    let endpoints = up(&ctx)?;
    let mut vars: Vec<(String, String)> = endpoints.iter().flat_map(Endpoint::vars).collect();
    // The venv also carries test tools; install it even when every server is the user's.
    ctx.venv()?;
    vars.extend(tool_vars(&ctx));
    Ok(vars)
}

/// Test tools from the venv: `REPOSMITH_LIBFAKETIME`, the library the
/// clock-skew tests preload into a child process.
fn tool_vars(ctx: &Ctx) -> Vec<(String, String)> {
    let venv = Venv::existing(ctx.dir());
    venv.libfaketime()
        .map(|path| {
            (
                "REPOSMITH_LIBFAKETIME".to_owned(),
                path.display().to_string(),
            )
        })
        .into_iter()
        .collect()
}

/// The cluster `cargo xtask test` brought up for the suite.
pub(crate) struct TestCluster {
    /// `REDIS_CLUSTER_URLS` and `REDIS_CLUSTER_PIDS`.
    pub(crate) vars: Vec<(String, String)>,
    /// True when this `up` created it (nothing ran before), so the run
    /// stops it at its end; a cluster that was running (or had nodes to
    /// restart) is left running.
    pub(crate) created: bool,
}

/// Brings the Redis Cluster up for the suite (restarting any node an
/// earlier run's failover test killed, so it rejoins as a replica).
pub(crate) fn cluster_for_child(root: &Path) -> Result<TestCluster, Error> {
    let ctx = Ctx::new(root)?;
    let cluster = cluster::up(&ctx)?;
    println!("{}", cluster.describe());
    Ok(TestCluster {
        vars: cluster
            .vars()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        created: cluster.created(),
    })
}

/// Stops the cluster [`cluster_for_child`] created, dead nodes and all.
pub(crate) fn cluster_down(root: &Path) -> Result<(), Error> {
    let ctx = Ctx::new(root)?;
    cluster::down(&ctx)?
        .iter()
        .for_each(|line| println!("{line}"));
    Ok(())
}

fn up(ctx: &Ctx) -> Result<Vec<Endpoint>, Error> {
    if ctx.state.fallback {
        println!(
            "note: the postgres OS user cannot reach target/ in this clone, so service state lives in {}",
            ctx.dir().display()
        );
    }
    let start = Instant::now();
    let mut endpoints = Vec::new();
    for up in [postgres::up, mongo::up, redis::up] {
        let endpoint = up(ctx)?;
        println!("{}", endpoint.describe());
        endpoints.push(endpoint);
    }
    println!("services up in {:.1} s", start.elapsed().as_secs_f64());
    Ok(endpoints)
}

fn down(ctx: &Ctx) -> Result<ExitCode, Error> {
    let mut failed = false;
    for down in [postgres::down, mongo::down, redis::down, cluster::down] {
        match down(ctx) {
            Ok(lines) => lines.iter().for_each(|line| println!("{line}")),
            Err(err) => {
                eprintln!("error: {err}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The state of each service: `Ok` when it runs, `Err` with the reason when not.
fn current(ctx: &Ctx) -> Vec<(&'static str, Result<Endpoint, String>)> {
    vec![
        ("postgres", postgres::status(ctx)),
        ("mongo", mongo::status(ctx)),
        ("redis", redis::status(ctx)),
    ]
}

fn status(ctx: &Ctx) -> ExitCode {
    println!("state:    {}", ctx.dir().display());
    for (name, state) in current(ctx) {
        match state {
            Ok(endpoint) => println!("{}", endpoint.describe()),
            Err(why) => println!("{:<10}{why}", format!("{name}:")),
        }
    }
    match cluster::status(ctx) {
        Ok(cluster) => println!("{}", cluster.describe()),
        Err(why) => println!("cluster:  {why}"),
    }
    ExitCode::SUCCESS
}

/// `export` lines for a shell. Full URLs on purpose: this is how a person
/// points their own tools at the services. A URL the user set themselves is
/// never echoed.
fn env(ctx: &Ctx) -> ExitCode {
    let mut missing = false;
    for (name, state) in current(ctx) {
        match state {
            Ok(Endpoint {
                origin: Origin::External,
                var,
                ..
            }) => {
                println!("# {var} is already set in your environment");
            }
            Ok(endpoint) => endpoint
                .vars()
                .iter()
                .for_each(|(k, v)| println!("export {k}={}", shell_quote(v))),
            Err(why) => {
                println!("# {name}: {why}: run `cargo xtask services up`");
                missing = true;
            }
        }
    }
    for (k, v) in tool_vars(ctx) {
        println!("export {k}={}", shell_quote(&v));
    }
    // The cluster is optional: printed when it runs, never a failure.
    if let Ok(cluster) = cluster::status(ctx) {
        for (k, v) in cluster.vars() {
            println!("export {k}={}", shell_quote(&v));
        }
    }
    if missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Single-quotes `value` for POSIX shells.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `path` as text for command lines and records.
fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("postgres://u:p@h/d"), "'postgres://u:p@h/d'");
    }

    #[test]
    fn external_urls_are_not_repeated_to_children() {
        let endpoint = Endpoint {
            name: "postgres",
            var: "DATABASE_URL",
            url: "postgres://u:canary@h/d".to_owned(),
            origin: Origin::External,
            extra: Vec::new(),
        };
        assert!(endpoint.vars().is_empty());
        assert!(!endpoint.describe().contains("canary"));
    }
}
