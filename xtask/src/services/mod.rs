//! `cargo xtask services up|down|status|env`: the real servers that tests and
//! the demo talk to.
//!
//! Each service is reused when the user's environment names one
//! (`DATABASE_URL`, `MONGODB_URL`, `REDIS_URL`), otherwise started under the
//! state directory and recorded there, so `down` stops exactly what `up`
//! started and nothing else. Three more are optional ([`Extras`]), started
//! by `up` with their flags and always by `cargo xtask test`: `--cluster`
//! a Redis Cluster (see [`cluster`]), `--replica` a streaming replica of
//! our PostgreSQL, `--pgbouncer` a transaction pooler in front of both.

mod cluster;
mod cluster_info;
mod mongo;
mod pgbouncer;
mod postgres;
pub(crate) mod process;
mod python;
mod redis;
mod state;
pub(crate) mod url;

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

/// Runs `services <sub> [flags]`; only `up` takes flags, any of
/// `--cluster --replica --pgbouncer`.
pub(crate) fn run(sub: &str, flags: &[&str], root: &Path) -> Result<ExitCode, Error> {
    let extras = match (sub, flags) {
        (_, []) => Extras::default(),
        ("up", flags) => Extras::parse(flags)?,
        _ => {
            return Err(Error::msg(format!(
                "unknown `services {sub} {}`: only `up` takes flags ({})",
                flags.join(" "),
                Extras::FLAGS.join(" ")
            )));
        }
    };
    let ctx = Ctx::new(root)?;
    match sub {
        "up" => up(&ctx).and_then(|_| up_extras(&ctx, extras).map(|_| ExitCode::SUCCESS)),
        "down" => down(&ctx),
        "status" => Ok(status(&ctx)),
        "env" => Ok(env(&ctx)),
        other => Err(Error::msg(format!(
            "unknown `services {other}`: use up, down, status or env"
        ))),
    }
}

/// The optional services, beside the three every test needs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extras {
    /// The Redis Cluster (`--cluster`).
    pub(crate) cluster: bool,
    /// The streaming replica of our PostgreSQL (`--replica`).
    pub(crate) replica: bool,
    /// PgBouncer in front of the primary and the replica (`--pgbouncer`).
    pub(crate) pgbouncer: bool,
}

impl Extras {
    /// Every one: what `cargo xtask test` starts.
    pub(crate) const ALL: Self = Self {
        cluster: true,
        replica: true,
        pgbouncer: true,
    };
    const FLAGS: [&str; 3] = ["--cluster", "--replica", "--pgbouncer"];

    /// Any subset of [`Self::FLAGS`], in any order; a repeat is harmless.
    fn parse(flags: &[&str]) -> Result<Self, Error> {
        let mut extras = Self::default();
        for flag in flags {
            match *flag {
                "--cluster" => extras.cluster = true,
                "--replica" => extras.replica = true,
                "--pgbouncer" => extras.pgbouncer = true,
                other => {
                    return Err(Error::msg(format!(
                        "unknown `services up` flag {other}: use any of {}",
                        Self::FLAGS.join(" ")
                    )));
                }
            }
        }
        Ok(extras)
    }

    /// True when none is asked for.
    pub(crate) fn is_empty(self) -> bool {
        self == Self::default()
    }

    /// Each one asked for, alone, in the order they start: the replica
    /// before PgBouncer, whose ini names it.
    fn each(self) -> Vec<Self> {
        let none = Self::default();
        let replica = Self {
            replica: self.replica,
            ..none
        };
        let pgbouncer = Self {
            pgbouncer: self.pgbouncer,
            ..none
        };
        let cluster = Self {
            cluster: self.cluster,
            ..none
        };
        let all = [replica, pgbouncer, cluster];
        all.into_iter().filter(|one| !one.is_empty()).collect()
    }

    /// The ones in either.
    fn union(self, other: Self) -> Self {
        Self {
            cluster: self.cluster || other.cluster,
            replica: self.replica || other.replica,
            pgbouncer: self.pgbouncer || other.pgbouncer,
        }
    }
}

/// The extras that were asked for, in the order of [`Extras::each`]. Each
/// prints its line; returns the variables for a child and which ones this
/// call started.
fn up_extras(ctx: &Ctx, wanted: Extras) -> Result<(Vec<(String, String)>, Extras), Error> {
    let mut vars = Vec::new();
    let mut created = Extras::default();
    let mut endpoint = |up: fn(&Ctx) -> Result<Option<Endpoint>, Error>| {
        let endpoint = up(ctx)?;
        if let Some(endpoint) = &endpoint {
            println!("{}", endpoint.describe());
            vars.extend(endpoint.vars());
        }
        Ok::<bool, Error>(endpoint.is_some_and(|e| e.fresh()))
    };
    if wanted.replica {
        created.replica = endpoint(postgres::replica_up)?;
    }
    if wanted.pgbouncer {
        created.pgbouncer = endpoint(pgbouncer::up)?;
    }
    if wanted.replica || wanted.pgbouncer {
        vars.extend(pg_extras_skipped(ctx));
    }
    if wanted.cluster {
        let cluster = cluster::up(ctx)?;
        println!("{}", cluster.describe());
        vars.extend(cluster.vars().into_iter().map(|(k, v)| (k.to_owned(), v)));
        created.cluster = cluster.created();
    }
    Ok((vars, created))
}

/// Tells the tests why the replica and PgBouncer are missing when they
/// cannot exist (the user's own PostgreSQL), so theirs skip instead of
/// failing as they do when the variables are simply unset.
const PG_EXTRAS_SKIPPED: &str = "REPOSMITH_TEST_PG_EXTRAS_SKIPPED";

/// [`PG_EXTRAS_SKIPPED`] with its reason, when it applies.
fn pg_extras_skipped(ctx: &Ctx) -> Option<(String, String)> {
    postgres::users_primary(ctx).map(|why| (PG_EXTRAS_SKIPPED.to_owned(), why))
}

/// `name:` padded so that every service's line lines up.
fn label(name: &str) -> String {
    format!("{:<11}", format!("{name}:"))
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
        format!("{}{how} at {}", label(self.name), url::redact(&self.url))
    }

    /// True when this `up` started it.
    fn fresh(&self) -> bool {
        matches!(self.origin, Origin::Managed { fresh: true, .. })
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
            format!(
                "{}left alone the server named by {} (not started by xtask)",
                label(self.name),
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
/// clock-skew tests preload into a child process, and `REPOSMITH_SECANTUSD`,
/// the SecantusDB server the fault tests start a server of their own with
/// (to `kill -9` it, which the shared one must never see).
fn tool_vars(ctx: &Ctx) -> Vec<(String, String)> {
    let venv = Venv::existing(ctx.dir());
    let libfaketime = venv
        .libfaketime()
        .map(|path| ("REPOSMITH_LIBFAKETIME", path));
    let secantusd = Some(venv.secantusd())
        .filter(|path| path.exists())
        .map(|path| ("REPOSMITH_SECANTUSD", path));
    libfaketime
        .into_iter()
        .chain(secantusd)
        .map(|(var, path)| (var.to_owned(), path.display().to_string()))
        .collect()
}

/// The extras `cargo xtask test` brought up for the suite.
pub(crate) struct TestExtras {
    /// Their variables: `REDIS_CLUSTER_URLS`, `REPOSMITH_TEST_PG_REPLICA_URL`...
    pub(crate) vars: Vec<(String, String)>,
    /// The ones this `up` started (nothing ran before), which the run stops
    /// at its end; one that was running (or a cluster that had nodes to
    /// restart) is left running.
    pub(crate) created: Extras,
}

/// Brings the `wanted` extras up for the suite (restarting any cluster
/// node an earlier run's failover test killed, so it rejoins as a
/// replica). When one fails, those this call started are stopped again.
pub(crate) fn extras_for_child(root: &Path, wanted: Extras) -> Result<TestExtras, Error> {
    let ctx = Ctx::new(root)?;
    let mut created = Extras::default();
    let mut vars = Vec::new();
    // One at a time, so a failure knows what the earlier ones started.
    for one in wanted.each() {
        match up_extras(&ctx, one) {
            Ok((more, started)) => {
                vars.extend(more);
                created = created.union(started);
            }
            Err(err) => {
                let _ = down_extras(&ctx, created);
                return Err(err);
            }
        }
    }
    Ok(TestExtras { vars, created })
}

/// Stops the extras [`extras_for_child`] created (the cluster with its
/// dead nodes and data).
pub(crate) fn extras_down(root: &Path, which: Extras) -> Result<(), Error> {
    down_extras(&Ctx::new(root)?, which)
}

fn down_extras(ctx: &Ctx, which: Extras) -> Result<(), Error> {
    let downs: [(bool, Down); 3] = [
        (which.pgbouncer, pgbouncer::down),
        (which.replica, postgres::replica_down),
        (which.cluster, cluster::down),
    ];
    for (_, down) in downs.into_iter().filter(|(asked, _)| *asked) {
        down(ctx)?.iter().for_each(|line| println!("{line}"));
    }
    Ok(())
}

/// A service's `down`: the lines it prints.
type Down = fn(&Ctx) -> Result<Vec<String>, Error>;

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
    // The pooler and the replica before the primary they depend on.
    let downs: [Down; 6] = [
        pgbouncer::down,
        postgres::replica_down,
        postgres::down,
        mongo::down,
        redis::down,
        cluster::down,
    ];
    for down in downs {
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

/// The state of the replica and the pooler, like [`current`]'s. Beside the
/// user's own PostgreSQL they are not offered even when they run: they
/// follow ours, so a test would write to one server and read another.
fn current_extras(ctx: &Ctx) -> Vec<(&'static str, Result<Endpoint, String>)> {
    if let Some(why) = postgres::users_primary(ctx) {
        let unused = |name| (name, Err(format!("not used: {why}")));
        return vec![unused("replica"), unused("pgbouncer")];
    }
    vec![
        ("replica", postgres::replica_status(ctx)),
        ("pgbouncer", pgbouncer::status(ctx)),
    ]
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
    println!("{}{}", label("state"), ctx.dir().display());
    for (name, state) in current(ctx).into_iter().chain(current_extras(ctx)) {
        match state {
            Ok(endpoint) => println!("{}", endpoint.describe()),
            Err(why) => println!("{}{why}", label(name)),
        }
    }
    match cluster::status(ctx) {
        Ok(cluster) => println!("{}", cluster.describe()),
        Err(why) => println!("{}{why}", label("cluster")),
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
    // The extras are optional: printed when they run, never a failure.
    let extras = current_extras(ctx).into_iter().filter_map(|(_, s)| s.ok());
    let vars = extras.flat_map(|endpoint| endpoint.vars());
    for (k, v) in vars.chain(pg_extras_skipped(ctx)) {
        println!("export {k}={}", shell_quote(&v));
    }
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
    fn up_takes_any_subset_of_the_extras_in_any_order() {
        assert_eq!(Extras::parse(&[]).unwrap(), Extras::default());
        let two = Extras::parse(&["--pgbouncer", "--replica"]).unwrap();
        assert_eq!(
            two,
            Extras {
                cluster: false,
                replica: true,
                pgbouncer: true
            }
        );
        let all = ["--replica", "--cluster", "--pgbouncer", "--cluster"];
        assert_eq!(Extras::parse(&all).unwrap(), Extras::ALL);
        assert!(Extras::parse(&["--replica", "--bogus"]).is_err());
    }

    #[test]
    fn only_up_takes_flags() {
        let root = Path::new("/nonexistent");
        assert!(run("down", &["--replica"], root).is_err());
        assert!(run("up", &["--pgbouncr"], root).is_err());
    }

    #[test]
    fn extras_start_one_at_a_time_replica_first() {
        let each = Extras::ALL.each();
        assert_eq!(each.len(), 3);
        assert!(each[0].replica && each[1].pgbouncer && each[2].cluster);
        assert!(each.iter().all(|one| one.union(*one) == *one));
        let union = each
            .iter()
            .fold(Extras::default(), |all, one| all.union(*one));
        assert_eq!(union, Extras::ALL);
        assert!(Extras::default().each().is_empty());
    }

    #[test]
    fn labels_line_up() {
        assert_eq!(label("redis"), "redis:     ");
        assert_eq!(label("pgbouncer"), "pgbouncer: ");
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
