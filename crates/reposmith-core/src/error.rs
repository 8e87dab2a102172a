//! The one error type every reposmith operation returns, classified so callers can act on it.
//!
//! # Contract for backends
//!
//! Each backend maps its driver's errors onto these variants; a caller never
//! needs to downcast to a driver type to decide what to do.
//!
//! | situation | variant | Postgres (sqlx) | MongoDB | Redis |
//! |---|---|---|---|---|
//! | unparsable URL, bad setting | [`Error::Config`] | `Error::Configuration`, URL parse | `InvalidArgument` | URL parse |
//! | host unknown, port closed, TLS refused | [`Error::Connect`] | `Io`, `Tls` while connecting, SQLSTATE 3D000, 53300, 57P03 | `ServerSelection`, `DnsResolve` | connection refused |
//! | credentials rejected | [`Error::Authentication`] | SQLSTATE 28P01, 28000 | `Authentication`, code 18 | `AuthenticationFailed` |
//! | no pooled connection in time | [`Error::PoolTimeout`] | `PoolTimedOut` | — | — |
//! | server silent past a deadline | [`Error::Timeout`]; while connecting [`Error::Connect`] | — | operation deadline | response timeout |
//! | connection broke mid-operation | [`Error::ConnectionLost`] | `Io` after connect | `Io`, `ConnectionPoolCleared` | dropped connection |
//! | backend not configured | [`Error::Unavailable`] | `PoolClosed` | — | — |
//! | unique constraint | [`Error::Conflict`] (constraint and field) | SQLSTATE 23505 | code 11000 | — |
//! | foreign key (`#[repo(references(..))]`) | [`Error::ForeignKey`] (relation, constraint, which side) | SQLSTATE 23503 | — (MongoDB has no foreign keys) | — |
//! | optimistic-lock miss | [`Error::StaleVersion`] | `UPDATE … WHERE version = $v` hit 0 rows, row exists | same, in the update filter | — |
//! | id not stored | [`Error::NotFound`] | 0 rows | 0 documents | — |
//! | value rejected before sending | [`Error::InvalidInput`] (field, reason) | NUL in text/JSON, NaN in JSON, JSON nested deeper than [`MAX_JSON_DEPTH`](crate::json::MAX_JSON_DEPTH); SQLSTATE 23502, 22P02, 22001, 22003 | `$`/`.` keys, integers beyond `i64`, JSON nested too deep | — |
//! | value, row or document over a size limit | [`Error::TooLarge`] | before sending: a statement's bound values (or a COPY row) over `PgConfig::max_bind_bytes`; from the server: SQLSTATE 54000 for an index entry over its limit (other 54000s stay `Backend`) (b-tree: 2,704 bytes after compression) | document over `maxBsonObjectSize` (16 MiB), before sending | — |
//! | serialization failure, deadlock | [`Error::Retryable`] | SQLSTATE 40001, 40P01 (also on COMMIT) | `TransientTransactionError` | — |
//! | connection lost after COMMIT sent | [`Error::CommitOutcomeUnknown`] | `Io` during COMMIT | `UnknownTransactionCommitResult`; `NoSuchTransaction` in reply to `commitTransaction` (a server that forgot an applied transaction in a restart answers a resent commit so; on MongoDB itself it also follows a transaction the server aborted, e.g. past its lifetime limit) | — |
//! | the application's embedder failed | [`Error::Embedding`] | — | — | — |
//! | stored value of the wrong type | [`Error::Decode`] | row mapping | document mapping | — |
//! | role lacks the privilege (DDL as the application role) | [`Error::PermissionDenied`] | SQLSTATE 42501 | — | — |
//! | anything else from the server | [`Error::Backend`] | SQLSTATE in `code` | server code in `code` | error code in `code` |
//!
//! Messages never contain a password: backends build them through
//! [`ConnectionUrl::scrub`](crate::ConnectionUrl::scrub), and the error keeps
//! the driver's message as text rather than the driver error itself, because
//! a driver error's `Display` or `Debug` is outside our control.

use std::time::Duration;

use crate::Backend;

/// The result type of every fallible reposmith operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable: a missing or malformed variable, an unparsable URL.
    #[error("invalid configuration for {subject}: {reason}")]
    Config {
        /// What was being configured: a backend name or an environment variable.
        subject: String,
        /// Why it was rejected.
        reason: String,
    },

    /// No connection could be established: unknown host, closed port, TLS failure, server refusing.
    #[error("cannot connect to {backend} at {target}: {reason}")]
    Connect {
        /// The store that could not be reached.
        backend: Backend,
        /// Host, port and database, without credentials.
        target: String,
        /// The driver's explanation, with secrets removed.
        reason: String,
    },

    /// The server rejected the credentials.
    #[error("{backend} at {target} rejected the credentials: {reason}")]
    Authentication {
        /// The store that refused.
        backend: Backend,
        /// Host, port and database, without credentials.
        target: String,
        /// The server's explanation, with secrets removed.
        reason: String,
    },

    /// Every pooled connection stayed busy for the whole acquire timeout.
    #[error("no {backend} connection became free within {waited:?}: the pool is exhausted")]
    PoolTimeout {
        /// The store whose pool is exhausted.
        backend: Backend,
        /// How long the caller waited (the configured acquire timeout).
        waited: Duration,
    },

    /// A server did not answer within a configured deadline.
    #[error("{backend} did not answer {operation} within {after:?}")]
    Timeout {
        /// The store that stayed silent.
        backend: Backend,
        /// What was waited for (`connect`, `ping`, a command name).
        operation: &'static str,
        /// The deadline that expired.
        after: Duration,
    },

    /// An established connection broke while an operation was in flight.
    #[error("lost the connection to {backend}: {reason}")]
    ConnectionLost {
        /// The store whose connection broke.
        backend: Backend,
        /// The driver's explanation, with secrets removed.
        reason: String,
    },

    /// The backend is not configured in this store, not compiled in, or has been closed.
    #[error("{backend} is unavailable: {reason}")]
    Unavailable {
        /// The store asked for.
        backend: Backend,
        /// Why it cannot be used.
        reason: String,
    },

    /// No stored entity has the given id.
    #[error("{entity} with id {id} not found")]
    NotFound {
        /// The entity type.
        entity: &'static str,
        /// The id looked for, as text.
        id: String,
    },

    /// A unique constraint refused the write (Postgres 23505, Mongo 11000).
    #[error("{entity}: another row already has this {} (constraint {constraint})",
        field.unwrap_or("key"))]
    Conflict {
        /// The entity type.
        entity: &'static str,
        /// The constraint or index that refused it.
        constraint: String,
        /// The field it covers, when the schema knows it.
        field: Option<&'static str>,
    },

    /// A foreign key refused the write (PostgreSQL SQLSTATE 23503; MongoDB
    /// has no foreign keys): a row named a referenced id that is not stored
    /// (`still_referenced == false`), or a delete or id change of a row that
    /// rows still reference under `on_delete = "restrict"` (`true`).
    #[error("{entity}: {} (relation {relation}, constraint {constraint})",
        if *still_referenced { "rows still reference it" } else { "the referenced row does not exist" })]
    ForeignKey {
        /// The entity whose write was refused.
        entity: &'static str,
        /// The relation, child to parent: `Chunk.document_id -> Document`
        /// (the child's table and column, `chunks.document_id -> Document`,
        /// when a parent's delete was refused: its schema does not know its
        /// children's entities).
        relation: String,
        /// The foreign key constraint (`<table>_<column>_fkey`).
        constraint: String,
        /// True when a referenced row was to go away; false when a
        /// referencing row named a missing one.
        still_referenced: bool,
    },

    /// An optimistic-locking update found a newer version: someone else wrote first.
    #[error("{entity} with id {id} changed since it was read (expected version {expected})")]
    StaleVersion {
        /// The entity type.
        entity: &'static str,
        /// The id of the row, as text.
        id: String,
        /// The version the caller held.
        expected: i64,
    },

    /// A value was rejected before anything was sent.
    #[error("invalid {entity}.{field}{}: {reason}", in_row(row))]
    InvalidInput {
        /// The entity type.
        entity: &'static str,
        /// The field at fault.
        field: String,
        /// What is wrong with it and what is accepted.
        reason: String,
        /// For a batch (`insert_many`, a bulk load), the row holding the value.
        row: Option<BatchRow>,
    },

    /// The server aborted the transaction to keep it serializable or break a
    /// deadlock (SQLSTATE 40001, 40P01; Mongo TransientTransactionError):
    /// running the whole unit of work again is safe.
    #[error("{backend} aborted the transaction ({code}), retry the whole unit of work: {reason}")]
    Retryable {
        /// The store that aborted.
        backend: Backend,
        /// SQLSTATE or error label.
        code: String,
        /// The server's message.
        reason: String,
    },

    /// A write was sent (a transaction's COMMIT, or a write outside one) but
    /// its answer never came: it may or may not have been applied. Never
    /// retried blindly; `reason` says what is known.
    #[error(
        "the outcome of a write to {backend} is unknown (it may or may not be applied): {reason}"
    )]
    CommitOutcomeUnknown {
        /// The store.
        backend: Backend,
        /// The driver's explanation.
        reason: String,
    },

    /// A document, value or batch exceeds a limit.
    #[error("{what} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// What was measured.
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The application's [`Embedder`](crate::embed::Embedder) failed; nothing was written.
    #[error("embedding {entity}.{field} failed: {reason}")]
    Embedding {
        /// The entity type.
        entity: &'static str,
        /// The vector field being filled (or searched by text).
        field: &'static str,
        /// The embedder's explanation.
        reason: String,
    },

    /// A rate limit can never admit this cost: it is larger than the limit's
    /// burst (or its quota). Not a denial to retry later: no wait makes it
    /// fit. Split the call, or raise the burst.
    #[error("{policy}.{limit} can never admit a cost of {cost}: its capacity is {capacity}")]
    ExceedsCapacity {
        /// The limiter's policy name.
        policy: String,
        /// The limit that cannot hold the cost.
        limit: String,
        /// The cost asked for.
        cost: u64,
        /// The most the limit admits at once (its burst, or its quota).
        capacity: u64,
    },
    /// A stored value could not be read into its field.
    #[error("cannot read {entity}.{field}: {source}")]
    Decode {
        /// The entity type.
        entity: &'static str,
        /// The field.
        field: &'static str,
        /// What was expected and found.
        source: crate::value::DecodeError,
    },

    /// The server refused an operation the connection's role has no
    /// privilege for (PostgreSQL SQLSTATE 42501, e.g. DDL as an application
    /// role without `CREATE`, or a write to a table it may only read). Not
    /// retryable: grant the privilege, or run the operation (migrations,
    /// `create_tables`) with the owner's URL (`PgConfig::migration_url`).
    #[error("{backend} refused the operation for lack of privilege ({code}): {reason}")]
    PermissionDenied {
        /// The store that refused.
        backend: Backend,
        /// SQLSTATE or server code.
        code: String,
        /// The server's message, with secrets removed.
        reason: String,
    },

    /// Any other error the server or driver reported.
    #[error("{backend} error{}: {reason}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Backend {
        /// The store that reported it.
        backend: Backend,
        /// The server's error code when it gave one (SQLSTATE, Mongo code, Redis code).
        code: Option<String>,
        /// The message, with secrets removed.
        reason: String,
    },
}

impl Error {
    /// The backend this error came from, when it came from one.
    pub fn backend(&self) -> Option<Backend> {
        match self {
            Error::Config { .. }
            | Error::NotFound { .. }
            | Error::Conflict { .. }
            | Error::ForeignKey { .. }
            | Error::StaleVersion { .. }
            | Error::InvalidInput { .. }
            | Error::TooLarge { .. }
            | Error::ExceedsCapacity { .. }
            | Error::Embedding { .. }
            | Error::Decode { .. } => None,
            Error::Connect { backend, .. }
            | Error::Authentication { backend, .. }
            | Error::PoolTimeout { backend, .. }
            | Error::Timeout { backend, .. }
            | Error::ConnectionLost { backend, .. }
            | Error::Unavailable { backend, .. }
            | Error::Retryable { backend, .. }
            | Error::CommitOutcomeUnknown { backend, .. }
            | Error::PermissionDenied { backend, .. }
            | Error::Backend { backend, .. } => Some(*backend),
        }
    }

    /// True when the store could not be reached or stopped answering, as opposed to
    /// rejecting the request: the cases where a cache falls back and a health check fails.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::PoolTimeout { .. }
                | Error::Timeout { .. }
                | Error::ConnectionLost { .. }
                | Error::Unavailable { .. }
        )
    }

    /// True when rerunning the whole unit of work is safe and may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Retryable { .. })
    }

    /// Shorthand for an invalid-input error.
    pub fn invalid(
        entity: &'static str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidInput {
            entity,
            field: field.into(),
            reason: reason.into(),
            row: None,
        }
    }

    /// Names the row of a batch this error is about: an invalid value gets
    /// `row`, an oversized row says which one; other errors are returned as
    /// they are (they are not about one row).
    #[must_use]
    pub fn at_row(self, index: usize, of: usize) -> Self {
        let at = BatchRow { index, of };
        match self {
            Error::InvalidInput {
                entity,
                field,
                reason,
                ..
            } => Error::InvalidInput {
                entity,
                field,
                reason,
                row: Some(at),
            },
            Error::TooLarge { what, size, limit } => Error::TooLarge {
                what: format!("{what} {at}"),
                size,
                limit,
            },
            other => other,
        }
    }

    /// A connection attempt that got no answer in time: reported as a connect
    /// failure, because to the caller an unanswering host is an unreachable one.
    pub fn connect_timed_out(backend: Backend, target: &str, after: Duration) -> Self {
        Error::Connect {
            backend,
            target: target.to_owned(),
            reason: format!("no answer within {after:?}"),
        }
    }

    /// Shorthand for a configuration error.
    pub fn config(subject: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            subject: subject.into(),
            reason: reason.into(),
        }
    }
}

/// Where in a batch a rejected value was: its index in the slice the caller
/// passed (counting from 0) and the batch's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRow {
    /// Index of the row in the caller's slice, from 0.
    pub index: usize,
    /// Rows in the batch.
    pub of: usize,
}

impl std::fmt::Display for BatchRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at index {} of {} rows",
            thousands(self.index),
            thousands(self.of)
        )
    }
}

/// ` at index 57 of 200,000 rows` for a row of a batch, nothing otherwise.
fn in_row(row: &Option<BatchRow>) -> String {
    row.map(|row| format!(" {row}")).unwrap_or_default()
}

/// `200000` as `200,000`: row counts in messages are read by people.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_row_is_named_in_the_message() {
        let error = Error::invalid("Invoice", "lines", "non-finite number at [0].tax_rate")
            .at_row(57, 200_000);
        assert_eq!(
            error.to_string(),
            "invalid Invoice.lines at index 57 of 200,000 rows: non-finite number at [0].tax_rate"
        );
        let single = Error::invalid("Invoice", "lines", "bad");
        assert_eq!(single.to_string(), "invalid Invoice.lines: bad");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn other_errors_pass_through_at_row() {
        let error = Error::config("x", "y").at_row(1, 2);
        assert!(matches!(error, Error::Config { .. }));
    }
}
