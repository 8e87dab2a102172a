//! The one place that decides how statements reach PostgreSQL through a
//! transaction pooler ([`PoolerMode::Transaction`](crate::PoolerMode)), and
//! how a pooler is recognised when the config says there is none.
//!
//! # Why a shape at all
//!
//! PgBouncer in `pool_mode = transaction` lends a client a server
//! connection for one transaction; outside a transaction, for one message
//! exchange (up to the next idle ReadyForQuery). sqlx runs a statement with
//! parameters as two exchanges (Parse + Describe + Sync, then Bind +
//! Execute + Sync), and by default names and caches it per client
//! connection. Both break there: the second exchange can land on another
//! server connection, whose statement of that name (or unnamed statement)
//! is another client's. Measured behind Debian's PgBouncer 1.18: 294 of
//! 2,000 concurrent queries returned another query's rows, 1,064 failed.
//!
//! # The shape (Transaction mode)
//!
//! - No named statements, anywhere: connections open with a statement
//!   cache of 0, and in sqlx 0.9.1 that makes *every* statement the unnamed
//!   one (`prepare()` names a statement only when `persistent &&
//!   cache_statement.is_enabled()`), including `prepare()` and statements
//!   this crate does not build. No per-statement `.persistent(false)` is
//!   needed or left to forget. (sqlx 0.8.6 leaked a server-side statement
//!   per query with a cache of 0, sqlx issue 4328; 0.9.1 does not, and a
//!   test checks `pg_prepared_statements` stays empty.)
//! - Every pool operation runs through [`run`]: `BEGIN` and the session
//!   settings in one simple-query round trip, the operation's statements,
//!   `COMMIT`; on failure `ROLLBACK` when the session can take it, else
//!   the connection is closed. A connection is never pooled while its
//!   transaction is open. Inside one transaction PgBouncer keeps the same
//!   server connection, so the unnamed statement's two exchanges stay
//!   together. Units of work send the settings right after their `BEGIN`.
//! - No `options` startup parameter (PgBouncer refuses it): the session
//!   settings (`statement_timeout`, `hnsw.ef_search`, pgvector's iterative
//!   scans, and any `-c name=value` of the URL's `options`) are replayed in
//!   every transaction as `set_config(name, value, true)`, which is
//!   `SET LOCAL`: they end with the transaction and never stay behind on a
//!   server connection another client gets next.
//! - sqlx resolves OIDs of types it does not know (pgvector's `vector`,
//!   enums) with its own queries; in 0.9.1 they go through `raw_sql` (the
//!   simple protocol, one exchange) from inside `prepare()`, so they run in
//!   the operation's transaction on the same server connection, and the
//!   unnamed statement they destroy is parsed again before the Bind (sqlx
//!   issue 4305). The cached OIDs are the database's, the same on every
//!   server connection. Nothing there is shape-unsafe.
//! - A single simple-protocol statement (`raw_sql`, no parameters) is one
//!   exchange, so it is safe on its own; the replica probes rely on that.
//!
//! Cost: a get-by-id is 4 round trips instead of 1 (BEGIN + settings, Parse
//! + Describe, Bind + Execute, COMMIT); the crate docs give the measurement.

mod detect;
mod settings;

use reposmith_core::repository::BoxFuture;
use sqlx::AssertSqlSafe;

use crate::executor::Held;

pub(crate) use detect::{Opened, open_probe, open_replica};
pub(crate) use settings::{TransactionSettings, connect_options, transaction_settings};

/// A failed [`run`]: the error, and whether it came from `COMMIT` (after
/// which a write's outcome may be unknown).
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: sqlx::Error,
    pub(crate) at_commit: bool,
}

impl Failed {
    fn before_commit(error: sqlx::Error) -> Self {
        Failed {
            error,
            at_commit: false,
        }
    }
}

/// Runs `op` on `held` in the shape its pool asks for: as it is on a
/// direct pool and in a unit of work (which owns its transaction), between
/// `BEGIN` + the session settings and `COMMIT` behind a transaction pooler.
/// Settles every statement, so the connection goes back to the pool only
/// when it is idle and ready.
pub(crate) async fn run<T, F>(held: &mut Held<'_>, op: F) -> Result<T, Failed>
where
    F: for<'c, 'h> FnOnce(&'c mut Held<'h>) -> BoxFuture<'c, sqlx::Result<T>>,
{
    let begin = held
        .pooled()
        .and_then(|connection| connection.transaction_settings())
        .map(|settings| settings.begin("BEGIN"));
    let Some(begin) = begin else {
        let outcome = op(held).await;
        held.settle(&outcome);
        return outcome.map_err(Failed::before_commit);
    };
    if let Err(error) = control(held, begin, true).await {
        roll_back(held).await;
        return Err(Failed::before_commit(error));
    }
    // The handle's tenant, for this transaction only, its value bound.
    let tenant = held.pooled().and_then(|c| c.local_tenant().cloned());
    if let Some(tenant) = tenant {
        let set = sqlx::query(crate::tenant::SET_LOCAL_TENANT)
            .bind(&*tenant)
            .persistent(false)
            .execute(&mut **held)
            .await;
        held.settle(&set);
        if let Err(error) = set {
            roll_back(held).await;
            return Err(Failed::before_commit(error));
        }
    }
    let outcome = op(held).await;
    held.settle(&outcome);
    match outcome {
        Ok(value) => match control(held, "COMMIT".to_owned(), false).await {
            Ok(()) => Ok(value),
            Err(error) => Err(Failed {
                error,
                at_commit: true,
            }),
        },
        Err(error) => {
            roll_back(held).await;
            Err(Failed::before_commit(error))
        }
    }
}

/// Sends transaction-control SQL (`BEGIN` + settings, `COMMIT`,
/// `ROLLBACK`). The connection counts as inside a transaction from before
/// `BEGIN` is sent until `COMMIT` or `ROLLBACK` is confirmed, so a
/// cancellation anywhere in between closes it instead of pooling it.
async fn control(held: &mut Held<'_>, sql: String, opens: bool) -> sqlx::Result<()> {
    if let Some(connection) = held.pooled() {
        connection.set_transaction_open(true);
    }
    // Safe: fixed keywords and settings quoted by `settings::literal`.
    let outcome = sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut **held)
        .await
        .map(drop);
    held.settle(&outcome);
    if outcome.is_ok()
        && !opens
        && let Some(connection) = held.pooled()
    {
        connection.set_transaction_open(false);
    }
    outcome
}

/// Ends a failed operation's transaction when the session is still ready
/// for a statement (a server error); after anything else the connection is
/// closed on release, which ends the transaction on the server.
async fn roll_back(held: &mut Held<'_>) {
    if held.is_ready() {
        let _ = control(held, "ROLLBACK".to_owned(), false).await;
    }
}
