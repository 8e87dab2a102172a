//! Maps redis-rs errors onto [`reposmith_core::Error`] per the core's error contract.

use std::time::Duration;

use redis::{ErrorKind, RedisError};
use reposmith_core::{Backend, ConnectionUrl, Error};

/// Server error codes that mean the credentials were refused.
const AUTH_CODES: &[&str] = &["WRONGPASS", "NOAUTH"];
/// Server error codes of a cluster in the middle of a failover or a
/// resharding: the slot's master cannot be reached yet, so the command
/// failed without running, as when a standalone server is down.
const CLUSTER_TRANSIENT_CODES: &[&str] = &["CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN"];

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
    let cluster_transient = err.kind() == ErrorKind::ClusterConnectionNotFound
        || err
            .code()
            .is_some_and(|c| CLUSTER_TRANSIENT_CODES.contains(&c));
    if err.code() == Some("NOREPLICAS") {
        return Error::Unavailable { backend, reason };
    }
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
