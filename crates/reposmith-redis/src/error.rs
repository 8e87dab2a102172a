//! Maps redis-rs errors onto [`reposmith_core::Error`] per the core's error contract.

use std::time::Duration;

use redis::{ErrorKind, RedisError};
use reposmith_core::{Backend, ConnectionUrl, Error};

/// Server error codes that mean the credentials were refused.
const AUTH_CODES: &[&str] = &["WRONGPASS", "NOAUTH"];
/// Server error codes of a server that cannot take the command *now* but
/// will once it recovers: loading its dataset after a restart (`LOADING`),
/// stuck in a script (`BUSY`), demoted to replica by a failover
/// (`READONLY`), a cluster in a failover or a resharding (`CLUSTERDOWN`,
/// `MASTERDOWN`, `TRYAGAIN`), memory full under `noeviction` (`OOM`), too few
/// replicas for a `WAIT` (`NOREPLICAS`). They are [`Error::Unavailable`], so
/// callers (the outbox relay) wait and retry instead of counting a failure
/// of the request itself.
const UNAVAILABLE_CODES: &[&str] = &[
    "LOADING",
    "BUSY",
    "READONLY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "OOM",
    "NOREPLICAS",
];

/// Whether the error happened while connecting or on an established connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connect,
    Operation,
}

/// Classifies `err`, naming the deadline that expired when it is a timeout.
pub(crate) fn map(
    url: &ConnectionUrl,
    err: &RedisError,
    phase: Phase,
    deadline: Duration,
) -> Error {
    let reason = url.scrub(&err.to_string());
    let backend = Backend::Redis;
    let target = url.target().to_owned();
    if is_auth_failure(err, phase) {
        return Error::Authentication {
            backend,
            target,
            reason,
        };
    }
    if matches!(
        err.kind(),
        ErrorKind::Parse | ErrorKind::InvalidClientConfig
    ) {
        return Error::config(backend.name(), reason);
    }
    if err.is_timeout() {
        let operation = if phase == Phase::Connect {
            "connect"
        } else {
            "a command"
        };
        return Error::Timeout {
            backend,
            operation,
            after: deadline,
        };
    }
    if let Some(code) = err.code().filter(|c| UNAVAILABLE_CODES.contains(c)) {
        // The server's reply line: redis-rs displays its own names for
        // some codes (`BusyLoading` for `LOADING`).
        let line = format!("{code} {}", err.detail().unwrap_or_default());
        return Error::Unavailable {
            backend,
            reason: url.scrub(line.trim_end()),
        };
    }
    let cluster_transient = err.kind() == ErrorKind::ClusterConnectionNotFound;
    match phase {
        Phase::Operation if cluster_transient => Error::ConnectionLost { backend, reason },
        _ if err.is_connection_refusal() || cluster_transient => Error::Connect {
            backend,
            target,
            reason,
        },
        Phase::Connect if err.is_io_error() => Error::Connect {
            backend,
            target,
            reason,
        },
        Phase::Operation if err.is_io_error() || err.is_connection_dropped() => {
            Error::ConnectionLost { backend, reason }
        }
        _ => Error::Backend {
            backend,
            code: err.code().map(str::to_owned),
            reason,
        },
    }
}

/// Redis reports a password sent to a server without one as a plain `ERR`
/// during the handshake; while connecting, any AUTH complaint is an auth failure.
fn is_auth_failure(err: &RedisError, phase: Phase) -> bool {
    let code_says_auth = err.code().is_some_and(|c| AUTH_CODES.contains(&c));
    let handshake_auth =
        phase == Phase::Connect && err.detail().is_some_and(|d| d.contains("AUTH"));
    err.kind() == ErrorKind::AuthenticationFailed || code_says_auth || handshake_auth
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error redis-rs makes of a server's error reply `line`.
    fn server_error(line: &str) -> RedisError {
        let reply = redis::parse_redis_value(format!("-{line}\r\n").as_bytes())
            .expect("an error reply parses");
        reply
            .extract_error()
            .expect_err("an error reply is an error")
    }

    fn map_operation(err: &RedisError) -> Error {
        let url = ConnectionUrl::new("redis://:hunter2@db.example:6379");
        map(&url, err, Phase::Operation, Duration::from_secs(1))
    }

    #[test]
    fn a_server_that_cannot_serve_now_is_unavailable() {
        for line in [
            "LOADING Redis is loading the dataset in memory",
            "BUSY Redis is busy running a script.",
            "READONLY You can't write against a read only replica.",
            "MASTERDOWN Link with MASTER is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "OOM command not allowed when used memory > 'maxmemory'.",
            "NOREPLICAS Not enough good replicas to write.",
        ] {
            let mapped = map_operation(&server_error(line));
            assert!(mapped.is_unreachable(), "{line}: {mapped:?}");
            let Error::Unavailable { backend, reason } = &mapped else {
                panic!("{line}: {mapped:?}");
            };
            assert_eq!(*backend, Backend::Redis);
            let code = line.split(' ').next().unwrap_or_default();
            assert!(reason.contains(code), "{line}: {reason}");
            let connecting = map(
                &ConnectionUrl::new("redis://db.example"),
                &server_error(line),
                Phase::Connect,
                Duration::from_secs(1),
            );
            assert!(connecting.is_unreachable(), "{line}: {connecting:?}");
        }
    }

    #[test]
    fn a_refused_request_is_not_unavailable() {
        for line in [
            "ERR unknown command 'FOO'",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "NOSCRIPT No matching script.",
            "BUSYGROUP Consumer Group name already exists",
            "NOTBUSY No scripts in execution right now.",
        ] {
            let mapped = map_operation(&server_error(line));
            assert!(
                matches!(mapped, Error::Backend { .. }),
                "{line}: {mapped:?}"
            );
        }
    }
}
