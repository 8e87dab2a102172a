//! Maps MongoDB driver errors onto [`reposmith_core::Error`] per the core's error contract.

use mongodb::error::{ErrorKind, WriteFailure};
use reposmith_core::{Backend, ConnectionUrl, EntitySchema, Error};

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
    // Checked first: a commit error carrying both labels may still have
    // committed, and must never be retried blindly.
    if commit_unknown(&err) {
        return Error::CommitOutcomeUnknown { backend, reason };
    }
    if is_transient(&err) {
        let code = "TransientTransactionError".to_owned();
        return Error::Retryable {
            backend,
            code,
            reason,
        };
    }
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
        // A write's own error keeps its server code, as a command's does.
        ErrorKind::Write(WriteFailure::WriteError(ref write)) => Error::Backend {
            backend,
            code: Some(write.code.to_string()),
            reason,
        },
        _ => Error::Backend {
            backend,
            code: None,
            reason,
        },
    }
}

/// The server (or the driver, for a network error inside a transaction)
/// aborted the transaction and says running it again may succeed: a write
/// conflict between concurrent transactions, a failover, a lost connection.
pub(crate) fn is_transient(err: &mongodb::error::Error) -> bool {
    err.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
}

/// `commitTransaction` failed in a way that leaves its outcome unknown: the
/// driver allows sending it again, which either confirms or fails cleanly.
pub(crate) fn commit_unknown(err: &mongodb::error::Error) -> bool {
    err.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT)
}

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// The server's message when `err` is a duplicate-key error (code 11000),
/// from a single write, a bulk insert or a command such as `findAndModify`.
pub(crate) fn duplicate_key(err: &mongodb::error::Error) -> Option<&str> {
    match &*err.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == DUPLICATE_KEY => {
            Some(&e.message)
        }
        ErrorKind::Command(e) if e.code == DUPLICATE_KEY => Some(&e.message),
        ErrorKind::InsertMany(e) => e
            .write_errors
            .iter()
            .flatten()
            .find(|w| w.code == DUPLICATE_KEY)
            .map(|w| w.message.as_str()),
        _ => None,
    }
}

/// The position in its batch of the first document an `insert_many` refused.
pub(crate) fn failed_index(err: &mongodb::error::Error) -> Option<usize> {
    match &*err.kind {
        ErrorKind::InsertMany(e) => e.write_errors.as_ref()?.iter().map(|w| w.index).min(),
        _ => None,
    }
}

/// The conflict error for a duplicate-key `message` on `schema`'s collection:
/// the index name is read from the message (`... index: <name> dup key: ...`),
/// and `_id_` names the id field.
pub(crate) fn conflict(schema: &EntitySchema, message: &str) -> Error {
    // The last "index: " before " dup key:": a collection name (earlier in
    // the message) may itself contain "index: ".
    let head = message.split(" dup key:").next().unwrap_or(message);
    let index = head
        .rsplit_once("index: ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("unknown")
        .to_owned();
    let field = if index == "_id_" {
        Some(schema.id_column().field)
    } else {
        schema.field_of_constraint(&index)
    };
    Error::Conflict {
        entity: schema.entity,
        constraint: index,
        field,
    }
}

#[cfg(test)]
mod tests {
    use reposmith_core::{ColumnDef, ColumnRole, ColumnType, IdStrategy, IndexDef, IndexMethod};

    use super::*;

    static COLUMNS: [ColumnDef; 2] = [
        ColumnDef::new("key", "key", ColumnType::Text, false).with_role(ColumnRole::Id),
        ColumnDef::new("name", "name", ColumnType::Text, false).with_unique(),
    ];
    static INDEXES: [IndexDef; 1] = [IndexDef::new(
        "t_name_key",
        &["name"],
        true,
        IndexMethod::BTree,
    )];
    static SCHEMA: EntitySchema =
        EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::Assigned, &INDEXES);

    #[test]
    fn conflicts_name_the_index_and_its_field() {
        let message = "E11000 duplicate key error collection: db.t index: t_name_key dup key: { name: \"a\" }";
        assert!(matches!(conflict(&SCHEMA, message),
            Error::Conflict { field: Some("name"), ref constraint, .. } if constraint == "t_name_key"));
        let tricky = "E11000 duplicate key error collection: db.index: x index: t_name_key dup key: { name: \"index: y\" }";
        assert!(matches!(conflict(&SCHEMA, tricky),
            Error::Conflict { field: Some("name"), ref constraint, .. } if constraint == "t_name_key"));
        let on_id = "E11000 duplicate key error collection: db.t index: _id_ dup key: { _id: 1 }";
        assert!(matches!(
            conflict(&SCHEMA, on_id),
            Error::Conflict {
                field: Some("key"),
                ..
            }
        ));
    }
}
