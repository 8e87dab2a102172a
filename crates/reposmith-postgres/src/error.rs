//! Maps sqlx errors onto [`reposmith_core::Error`] per the core's error contract.

use std::time::Duration;

use reposmith_core::{Backend, ConnectionUrl, EntitySchema, Error};
use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;

/// SQLSTATEs that mean the server refused the credentials.
const AUTH_STATES: &[&str] = &["28P01", "28000"];
/// SQLSTATEs that, while connecting, mean the server will not take a session:
/// unknown database, too many connections, starting up or shutting down.
const REFUSED_STATES: &[&str] = &["3D000", "53300", "57P01", "57P02", "57P03"];
/// SQLSTATEs that, on an established session, mean the server ended it:
/// terminated by an administrator, crash or shutdown (class 57P), or any
/// connection exception (class 08).
const ENDED_STATES: &[&str] = &["57P01", "57P02", "57P03", "57P05", "25P03"];
/// SQLSTATEs of a server-side deadline: statement_timeout, lock_timeout.
const TIMEOUT_STATES: &[&str] = &["57014", "55P03"];
/// SQLSTATEs after which rerunning the whole transaction is safe:
/// serialization failure and deadlock.
const RETRYABLE_STATES: &[&str] = &["40001", "40P01"];
/// SQLSTATEs that mean the server refused a value: NOT NULL violation,
/// unparsable text for the type, string too long, number out of range.
const INVALID_STATES: &[&str] = &["23502", "22P02", "22001", "22003"];

/// A server error as a user can act on it: the message, then the detail
/// and hint when the server sent them. sqlx's `Display` appends the line of
/// Postgres' own C source that raised it ("at line 331"), which means
/// nothing to a caller; the SQLSTATE travels in the error's `code`.
fn server_reason(db: &dyn DatabaseError) -> String {
    let mut reason = db.message().to_owned();
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        for (label, text) in [("detail", pg.detail()), ("hint", pg.hint())] {
            if let Some(text) = text {
                reason.push_str(&format!(" ({label}: {})", shortened(text)));
            }
        }
    }
    reason
}

/// At most [`DETAIL_CHARS`] characters of a detail: a NOT NULL violation's
/// "Failing row contains (...)" holds the whole row, embeddings included.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(DETAIL_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// Characters of a server error's detail or hint kept in a message.
const DETAIL_CHARS: usize = 300;

/// What was being done when the error happened; decides whether an I/O error
/// means "could not connect" or "lost the connection".
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connect,
    Operation,
}

/// Everything the mapping needs to name the server without its password.
pub(crate) struct ErrorContext<'a> {
    pub(crate) url: &'a ConnectionUrl,
    pub(crate) acquire_timeout: Duration,
    /// Reported as the deadline of a server-side statement timeout.
    pub(crate) statement_timeout: Option<Duration>,
}

impl ErrorContext<'_> {
    /// Classifies `err` and removes the URL's secrets from its message.
    pub(crate) fn map(&self, err: sqlx::Error, phase: Phase) -> Error {
        let reason = match &err {
            sqlx::Error::Database(db) => self.url.scrub(&server_reason(db.as_ref())),
            other => self.url.scrub(&other.to_string()),
        };
        let target = self.url.target().to_owned();
        let backend = Backend::Postgres;
        match err {
            sqlx::Error::Configuration(_) => Error::config(backend.name(), reason),
            sqlx::Error::PoolTimedOut => Error::PoolTimeout {
                backend,
                waited: self.acquire_timeout,
            },
            sqlx::Error::PoolClosed => Error::Unavailable { backend, reason },
            sqlx::Error::Database(db) => self.map_database(db.code().as_deref(), reason, phase),
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_)
                if phase == Phase::Connect =>
            {
                Error::Connect {
                    backend,
                    target,
                    reason,
                }
            }
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => {
                Error::ConnectionLost { backend, reason }
            }
            _ => Error::Backend {
                backend,
                code: None,
                reason,
            },
        }
    }

    /// Like [`ErrorContext::map`] for an operation on `schema`'s table, so
    /// constraint and value errors can name the entity and field.
    pub(crate) fn map_for(&self, err: sqlx::Error, schema: &'static EntitySchema) -> Error {
        let err = match RowDecode::unwrap(err) {
            Ok(decoded) => return decoded,
            Err(err) => err,
        };
        if let sqlx::Error::Database(db) = &err
            && let Some(mapped) = self.classify(db.as_ref(), schema)
        {
            return mapped;
        }
        self.map(err, Phase::Operation)
    }

    /// The repository-level meaning of a server error, if it has one.
    fn classify(&self, db: &dyn DatabaseError, schema: &'static EntitySchema) -> Option<Error> {
        let code = db.code()?;
        let reason = self.url.scrub(&server_reason(db));
        if code == "23505" {
            let constraint = db.constraint().unwrap_or_default().to_owned();
            let field = schema.field_of_constraint(&constraint);
            return Some(Error::Conflict {
                entity: schema.entity,
                constraint,
                field,
            });
        }
        if code == "23503" {
            return Some(foreign_key_error(db, schema));
        }
        if RETRYABLE_STATES.contains(&&*code) {
            let (backend, code) = (Backend::Postgres, code.into_owned());
            return Some(Error::Retryable {
                backend,
                code,
                reason,
            });
        }
        if code == "2200H" {
            // An identity id's sequence reached its type's maximum (32767 for
            // a smallint id): no id is left, as MongoDB's counter reports it.
            let reason = format!("no identity id left: {reason}");
            return Some(Error::invalid(
                schema.entity,
                schema.id_column().field,
                reason,
            ));
        }
        if code == "54000" {
            // A program limit; on a repository's write, an index entry over
            // PostgreSQL's size limit ("index row requires 20040 bytes,
            // maximum size is 8191", or b-tree's 2,704 bytes): a value too
            // large for an index on its column, refused after the upload.
            // Other 54000s ("string is too long for tsvector", "array size
            // exceeds the maximum allowed") carry no size and limit pair:
            // they stay `Backend` errors with the code and the server's
            // reason rather than a `TooLarge` with made-up numbers.
            if !reason.contains("index row") {
                return None;
            }
            let mut numbers = reason
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<usize>().ok())
                .filter(|&n| n > 4);
            let (size, limit) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
            return Some(Error::TooLarge {
                what: format!("a {} value for an index ({reason})", schema.entity),
                size,
                limit,
            });
        }
        if INVALID_STATES.contains(&&*code) {
            let column = db
                .try_downcast_ref::<PgDatabaseError>()
                .and_then(|e| e.column());
            return Some(Error::invalid(
                schema.entity,
                field_name(schema, column),
                reason,
            ));
        }
        None
    }

    fn map_database(&self, code: Option<&str>, reason: String, phase: Phase) -> Error {
        let backend = Backend::Postgres;
        let target = self.url.target().to_owned();
        let session_ended = |code: &str| ENDED_STATES.contains(&code) || code.starts_with("08");
        match code {
            Some(code) if AUTH_STATES.contains(&code) => Error::Authentication {
                backend,
                target,
                reason,
            },
            Some(code) if phase == Phase::Connect && REFUSED_STATES.contains(&code) => {
                Error::Connect {
                    backend,
                    target,
                    reason,
                }
            }
            Some(code) if phase == Phase::Operation && session_ended(code) => {
                Error::ConnectionLost { backend, reason }
            }
            // Serialization failures and deadlocks also surface on COMMIT and
            // on statements outside any entity's repository.
            Some(code) if RETRYABLE_STATES.contains(&code) => Error::Retryable {
                backend,
                code: code.to_owned(),
                reason,
            },
            // A write that reached a hot standby: the URL names a replica.
            Some("25006") => Error::config(
                backend.name(),
                format!(
                    "the server at {} refused a write as read-only (a hot standby, or \
                     default_transaction_read_only = on): writes need the primary's URL; {reason}",
                    self.url
                ),
            ),
            // insufficient_privilege: the role may not do this (DDL as an
            // application role, a write it was not granted). Named so the
            // caller can tell a missing grant from a broken statement.
            Some(code @ "42501") => Error::PermissionDenied {
                backend,
                code: code.to_owned(),
                reason: format!(
                    "{reason} (the role in {} lacks this privilege: run DDL and migrations \
                     with the owner's URL, REPOSMITH_MIGRATION_DATABASE_URL, or grant it)",
                    self.url
                ),
            },
            Some(code) if TIMEOUT_STATES.contains(&code) => Error::Timeout {
                backend,
                operation: if code == "55P03" {
                    "a lock"
                } else {
                    "a statement"
                },
                after: self.statement_timeout.unwrap_or_default(),
            },
            _ => Error::Backend {
                backend,
                code: code.map(str::to_owned),
                reason,
            },
        }
    }
}

/// The field stored in `column`, else the column name, else a generic word:
/// the server names the column only for some errors (NOT NULL, not 22P02).
fn field_name(schema: &EntitySchema, column: Option<&str>) -> String {
    let Some(column) = column else {
        return "value".to_owned();
    };
    let field = schema.columns.iter().find(|c| c.name == column);
    field.map_or(column, |c| c.field).to_owned()
}

/// A foreign key violation (23503) met by a write on `schema`'s table.
///
/// The constraint is one of `schema`'s own references when a row of it
/// named a missing parent; otherwise it belongs to a child table and a
/// delete (or id change) of a row it still references was refused. A
/// self-reference (a tree's `parent_id`) can be either: the server's detail
/// ("is still referenced") tells them apart, in PostgreSQL's English
/// messages (`lc_messages` other than English reads as a missing parent).
fn foreign_key_error(db: &dyn DatabaseError, schema: &'static EntitySchema) -> Error {
    let constraint = db.constraint().unwrap_or_default().to_owned();
    let detail = db
        .try_downcast_ref::<PgDatabaseError>()
        .and_then(|e| e.detail())
        .unwrap_or_default();
    let own = schema.reference_of_constraint(&constraint);
    let self_reference = own.is_some_and(|(_, r)| {
        (r.target().schema, r.target().table) == (schema.schema, schema.table)
    });
    let still_referenced = own.is_none() || (self_reference && detail.contains("still referenced"));
    let relation = match own {
        Some((column, reference)) => format!(
            "{}.{} -> {}",
            schema.entity,
            column.field,
            reference.target().entity
        ),
        None => {
            let table = db.table().unwrap_or("?");
            let column = constraint
                .strip_prefix(&format!("{table}_"))
                .and_then(|c| c.strip_suffix("_fkey"))
                .unwrap_or("?");
            format!("{table}.{column} -> {}", schema.entity)
        }
    };
    Error::ForeignKey {
        entity: schema.entity,
        relation,
        constraint,
        still_referenced,
    }
}

/// A row that failed to decode into an entity while its statement's rows
/// were still streaming in: carried through sqlx's error type out of the
/// statement's future, then handed back unchanged by
/// [`ErrorContext::map_for`], so the caller sees the typed
/// [`Error::Decode`] naming the field.
#[derive(Debug)]
pub(crate) struct RowDecode(pub(crate) Error);

impl RowDecode {
    /// `error` as a sqlx error, to leave a row stream with.
    pub(crate) fn wrap(error: Error) -> sqlx::Error {
        sqlx::Error::Decode(Box::new(RowDecode(error)))
    }

    /// The decode error `err` carries, or `err` itself.
    fn unwrap(err: sqlx::Error) -> Result<Error, sqlx::Error> {
        match err {
            sqlx::Error::Decode(inner) => match inner.downcast::<RowDecode>() {
                Ok(decoded) => Ok(decoded.0),
                Err(inner) => Err(sqlx::Error::Decode(inner)),
            },
            other => Err(other),
        }
    }
}

impl std::fmt::Display for RowDecode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for RowDecode {}
