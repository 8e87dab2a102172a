//! Maps MongoDB driver errors onto [`reposmith_core::Error`] per the core's error contract.

use mongodb::error::ErrorKind;
use reposmith_core::{Backend, ConnectionUrl, Error};

/// Server codes that mean the credentials were refused: AuthenticationFailed, Unauthorized.
const AUTH_CODES: &[i32] = &[18, 13];

/// Whether an I/O error means "never connected" or "connection broke".
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connect,
    Operation,
}

/// Classifies `err` and removes `url`'s secrets from its message.
pub(crate) fn map(url: &ConnectionUrl, err: mongodb::error::Error, phase: Phase) -> Error {
    let reason = url.scrub(&err.to_string());
    let backend = Backend::Mongo;
    let target = url.target().to_owned();
    match *err.kind {
        ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. } => {
            Error::config(backend.name(), reason)
        }
        ErrorKind::Authentication { .. } => Error::Authentication {
            backend,
            target,
            reason,
        },
        ErrorKind::Command(ref command) if AUTH_CODES.contains(&command.code) => {
            Error::Authentication {
                backend,
                target,
                reason,
            }
        }
        ErrorKind::Command(ref command) => Error::Backend {
            backend,
            code: Some(command.code.to_string()),
            reason,
        },
        ErrorKind::ServerSelection { .. } | ErrorKind::DnsResolve { .. } => Error::Connect {
            backend,
            target,
            reason,
        },
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } if phase == Phase::Connect => {
            Error::Connect {
                backend,
                target,
                reason,
            }
        }
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
            Error::ConnectionLost { backend, reason }
        }
        ErrorKind::Shutdown => Error::Unavailable { backend, reason },
        _ => Error::Backend {
            backend,
            code: None,
            reason,
        },
    }
}
