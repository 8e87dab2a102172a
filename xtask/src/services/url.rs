//! Just enough URL handling for `DATABASE_URL`, `MONGODB_URL` and
//! `REDIS_URL`: where to knock, and how to print one without its password.
//!
//! By hand, because xtask is std-only; the drivers do the real parsing.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::process;

/// Where a URL says its server listens.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Address {
    /// A TCP host and port (the first, when the URL lists several hosts).
    Tcp(String, u16),
    /// A Unix socket file.
    Unix(PathBuf),
    /// Nothing we can check without a driver, e.g. `mongodb+srv://` (DNS SRV).
    Unchecked,
}

/// The address in `url`, with `default_port` when the URL names none.
pub(crate) fn address(url: &str, default_port: u16) -> Option<Address> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.ends_with("+srv") {
        return Some(Address::Unchecked);
    }
    if scheme.ends_with("unix") {
        let path = rest.split(['?', '#']).next()?;
        return Some(Address::Unix(PathBuf::from(path)));
    }
    let (_, hosts, _) = split_authority(rest);
    let first = hosts.split(',').next()?;
    let (host, port) = split_host_port(first)?;
    let port = port.unwrap_or(default_port);
    if !host.is_empty() {
        return Some(Address::Tcp(host.to_owned(), port));
    }
    // libpq style: `postgres:///db?host=/var/run/postgresql` is a socket dir.
    let socket_dir = query_param(url, "host").filter(|dir| dir.starts_with('/'));
    let socket = |dir: &str| Address::Unix(PathBuf::from(format!("{dir}/.s.PGSQL.{port}")));
    Some(socket_dir.map_or(Address::Tcp("localhost".to_owned(), port), socket))
}

/// Splits what follows `scheme://` into user info, hosts and the rest.
///
/// The user info ends at the last `@` before the query, so a password with an
/// unescaped `/` or `@` still counts as user info (and gets redacted).
fn split_authority(rest: &str) -> (Option<&str>, &str, &str) {
    let head = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let (info, after) = match head.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    (info, &after[..end], &after[end..])
}

/// `url` naming database `name` instead of its own (the path after the
/// hosts; the query is kept). `None` for what is not a URL, or a Unix-socket
/// URL whose path is the socket.
pub(crate) fn with_database(url: &str, name: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.ends_with("unix") {
        return None;
    }
    let (info, hosts, tail) = split_authority(rest);
    let query = tail.find(['?', '#']).map_or("", |at| &tail[at..]);
    let info = info.map_or(String::new(), |info| format!("{info}@"));
    Some(format!("{scheme}://{info}{hosts}/{name}{query}"))
}

/// `host[:port]` or `[v6][:port]`; `None` for a port that is not a number.
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    match port {
        Some(port) if !port.is_empty() => Some((host, Some(port.parse().ok()?))),
        _ => Some((host, None)),
    }
}

fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// True when something accepts a connection at `url` within `timeout`.
pub(crate) fn reachable(url: &str, default_port: u16, timeout: Duration) -> bool {
    match address(url, default_port) {
        Some(Address::Tcp(host, port)) => process::tcp_reachable(&host, port, timeout),
        Some(Address::Unix(path)) => UnixStream::connect(path).is_ok(),
        Some(Address::Unchecked) => true,
        None => false,
    }
}

/// `url` with its password (user info or `password=` parameter) as `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    let (info, hosts, tail) = split_authority(rest);
    let authority = match info {
        Some(info) => match info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{info}@{hosts}"),
        },
        None => hosts.to_owned(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let pairs = query.split('&').map(|pair| match pair.split_once('=') {
        Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
        _ => pair.to_owned(),
    });
    format!("{path}?{}", pairs.collect::<Vec<_>>().join("&"))
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_url_names_another_database() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:55432/reposmith", "rag").as_deref(),
            Some("postgres://u:p@127.0.0.1:55432/rag")
        );
        assert_eq!(
            with_database(
                "mongodb://127.0.0.1:27117/reposmith?directConnection=true",
                "rag"
            )
            .as_deref(),
            Some("mongodb://127.0.0.1:27117/rag?directConnection=true")
        );
        assert_eq!(
            with_database("postgres://h", "rag").as_deref(),
            Some("postgres://h/rag")
        );
        assert_eq!(with_database("not a url", "rag"), None);
    }

    use super::*;

    fn tcp(host: &str, port: u16) -> Option<Address> {
        Some(Address::Tcp(host.to_owned(), port))
    }

    #[test]
    fn addresses_come_from_the_authority() {
        assert_eq!(
            address("postgres://u:p@db.example:6543/app", 5432),
            tcp("db.example", 6543)
        );
        assert_eq!(address("postgres://u:p%40ss@h/app", 5432), tcp("h", 5432));
        assert_eq!(
            address("postgresql://u@[::1]:5433/x?sslmode=disable", 5432),
            tcp("::1", 5433)
        );
        assert_eq!(
            address("mongodb://a:27018,b:27019/db?replicaSet=rs", 27017),
            tcp("a", 27018)
        );
        assert_eq!(
            address("redis://:secret@127.0.0.1:6380/0", 6379),
            tcp("127.0.0.1", 6380)
        );
        assert_eq!(
            address("mongodb+srv://u:p@cluster.example/db", 27017),
            Some(Address::Unchecked)
        );
        assert_eq!(address("postgres://h:notaport/db", 5432), None);
        assert_eq!(address("not a url", 5432), None);
    }

    #[test]
    fn libpq_socket_urls_name_the_socket_file() {
        let expected = Address::Unix(PathBuf::from("/run/pg/.s.PGSQL.5433"));
        assert_eq!(
            address("postgres:///db?host=/run/pg&port=1", 5433),
            Some(expected)
        );
        assert_eq!(address("postgres:///db", 5432), tcp("localhost", 5432));
    }

    #[test]
    fn passwords_never_survive_redaction() {
        let cases = [
            (
                "postgres://postgres:reposmith@127.0.0.1:55432/reposmith",
                "postgres://postgres:***@127.0.0.1:55432/reposmith",
            ),
            ("postgres://u:p@ss:w@rd@h:1/db", "postgres://u:***@h:1/db"),
            ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
            ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?password=canary&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
            (
                "mongodb://127.0.0.1:27117/reposmith?directConnection=true",
                "mongodb://127.0.0.1:27117/reposmith?directConnection=true",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(redact(url), expected);
        }
        assert!(!redact("garbage canary").contains("canary"));
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let port = process::free_port().unwrap();
        let url = format!("postgres://u:p@127.0.0.1:{port}/db");
        assert!(!reachable(&url, 5432, Duration::from_millis(500)));
    }
}
