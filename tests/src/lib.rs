//! Helpers shared by the integration tests: where the real servers are, and
//! URLs bent on purpose (wrong password, closed port, unknown host).
//!
//! The servers come from `DATABASE_URL`, `MONGODB_URL` and `REDIS_URL`, which
//! `cargo xtask test` sets after starting them.
//!
//! [`conformance`] is the backend-neutral repository suite every backend runs.
//! [`own_postgres`] and [`own_mongo`] start a PostgreSQL and a SecantusDB
//! of a test's own, which fault tests restart and `kill -9`.
//! [`redis_server`] starts a Redis of a test's own (the queue tests' crashes,
//! restarts and pauses); [`redis_cluster`] finds and kills masters of the
//! cluster named by `REDIS_CLUSTER_URLS`; [`pg_replica`] names the
//! PostgreSQL replica and PgBouncer, and stops and starts the replica.
//! [`fault_proxy`] is a loopback TCP proxy that stalls, delays, closes,
//! resets or loses replies on command.

pub mod conformance;
pub mod fault_proxy;
pub mod letters;
pub mod own_mongo;
pub mod own_postgres;
pub mod pg_replica;
pub mod redis_cluster;
pub mod redis_server;
pub mod tls_certs;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A Redis ACL user that does not exist. Redis' `default` user is `nopass` on
/// a server without a password and accepts any password, so a wrong password
/// is only refused for a user that has one or does not exist.
pub const REDIS_NOBODY: &str = "reposmith-test-nobody";

/// The URL in `variable`, or a panic explaining how to run the suite.
pub fn service_url(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{variable} is not set: run the suite with `cargo xtask test`, which starts the \
             services, or export {variable} (see `cargo xtask services env`)"
        ),
    }
}

/// Whether the heavy variants of long loops run (`REPOSMITH_HEAVY=1`);
/// CI runs the bounded ones.
pub fn heavy() -> bool {
    std::env::var("REPOSMITH_HEAVY").is_ok_and(|v| v == "1")
}

/// Whether this run gives the suite's PostgreSQL pools one connection each
/// (`REPOSMITH_TEST_POOL_OF_ONE=1`, set by `cargo xtask test --pool-of-one`).
/// A library path that needs a second connection while it holds one (a
/// unit of work reaching the pool, a cache fill inside a stream, a relay
/// writing while it claims) then ends in a pool timeout instead of passing.
pub fn pool_of_one() -> bool {
    std::env::var("REPOSMITH_TEST_POOL_OF_ONE").is_ok_and(|v| v == "1")
}

/// `n` connections, or one in a pool-of-one run. Tests whose scenario is
/// itself about several connections (pool fairness, concurrent load,
/// many tasks behind PgBouncer) set their size directly instead.
pub fn pool_size(n: u32) -> u32 {
    if pool_of_one() { 1 } else { n }
}

/// `PgConfig::new(url)` with the suite's pool size: the library's default
/// of 10, or one in a pool-of-one run.
pub fn pg_config(url: impl Into<String>) -> reposmith::PgConfig {
    reposmith::PgConfig::new(url).max_connections(pool_size(10))
}

/// `url` with every session's `search_path` set to `path` (`"ns"` or
/// `"ns,public"`) through the URL's `options`.
pub fn with_search_path(url: &str, path: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let path = path.replace(',', "%2C");
    format!("{url}{sep}options=-c%20search_path%3D{path}")
}

/// Runs `sql` (trusted test text: schema names from `unique_name`) on
/// `pg`'s raw pool, panicking on failure.
pub async fn run_sql(pg: &reposmith::PgBackend, sql: &str) {
    use reposmith::postgres::sqlx;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pg.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// PostgreSQL with pgvector.
pub fn database_url() -> String {
    service_url("DATABASE_URL")
}

/// MongoDB wire-protocol server with transactions.
pub fn mongodb_url() -> String {
    service_url("MONGODB_URL")
}

/// Redis.
pub fn redis_url() -> String {
    service_url("REDIS_URL")
}

/// A name no other test or run uses, for tables, collections and keys.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}_{}_{}_{n}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

/// `url` with its userinfo replaced by `user:password`.
pub fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    format!("{scheme}://{user}:{password}@{host_part}")
}

/// `url` with its host and port replaced by `host_port`.
pub fn with_host(url: &str, host_port: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), rest),
    };
    let tail_start = hosts.find(['/', '?']).unwrap_or(hosts.len());
    format!("{scheme}://{userinfo}{host_port}{}", &hosts[tail_start..])
}

/// `host:port` of the (first) server in `url`.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let hosts = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    hosts[..hosts.find(['/', '?']).unwrap_or(hosts.len())].to_owned()
}

/// The user name in `url`, or `default` when it has none.
pub fn user_of(url: &str, default: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.rsplit_once('@') {
        Some((userinfo, _)) => userinfo.split(':').next().unwrap_or(default).to_owned(),
        None => default.to_owned(),
    }
}

/// The password in `url`, if it has one.
pub fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (userinfo, _) = rest.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// A loopback port that refuses connections for as long as the process runs.
///
/// The port stays bound by a socket that never listens (and is bound
/// without `SO_REUSEADDR`), so a connection to it is refused and the kernel
/// never hands it to another socket. A port bound and then released would be
/// free for anyone: a test that keeps retrying it (a Redis client's
/// reconnects) could reach a listener another test process bound there
/// since, and count as that listener's connection.
pub fn closed_port() -> u16 {
    static HELD: std::sync::OnceLock<tokio::net::TcpSocket> = std::sync::OnceLock::new();
    let socket = HELD.get_or_init(|| {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("bind a loopback port");
        socket
    });
    socket.local_addr().expect("local address").port()
}

/// A free loopback port below Linux's ephemeral range (32768-60999), for a
/// server a test starts and restarts on the same port: a kernel-chosen port
/// is in that range, where another test's client connection may take it
/// while the server is down, and the restart then fails. Starts at a
/// per-process offset so parallel test processes rarely try the same ones.
pub fn server_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 25_000;
    const SPAN: u32 = 7_000;
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (start + step * 13) % SPAN).expect("below 32768");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bends_urls() {
        let url = "postgres://postgres:reposmith@127.0.0.1:55432/reposmith?sslmode=disable";
        assert_eq!(
            with_credentials(url, "postgres", "x"),
            "postgres://postgres:x@127.0.0.1:55432/reposmith?sslmode=disable"
        );
        assert_eq!(
            with_host(url, "127.0.0.1:1"),
            "postgres://postgres:reposmith@127.0.0.1:1/reposmith?sslmode=disable"
        );
        assert_eq!(with_host("redis://127.0.0.1:6379", "h:1"), "redis://h:1");
        assert_eq!(user_of(url, "u"), "postgres");
        assert_eq!(user_of("redis://127.0.0.1:6379/0", "default"), "default");
        assert_eq!(password_of(url).as_deref(), Some("reposmith"));
        assert_eq!(password_of("redis://127.0.0.1:6379/0"), None);
    }
}
