//! Recognising a connection pooler at connect in Direct mode, where named
//! statements behind it could return another query's rows.
//!
//! The signal is the `options` startup parameter. The probe connection of
//! [`PgBackend::connect`](crate::PgBackend::connect) always sends one
//! setting through it, [`MARKER`], and a session of PostgreSQL's own
//! reports it back from `current_setting`. A pooler cannot pass startup
//! options on: one server connection serves many clients. Checked against
//! Debian's PgBouncer 1.18 and PostgreSQL 16:
//!
//! - PgBouncer as shipped refuses the connection with FATAL
//!   `unsupported startup parameter: options` ([`refused_startup`]);
//! - PgBouncer with `options` in `ignore_startup_parameters` accepts it and
//!   drops the setting, so the session reports no marker
//!   ([`check_direct`]);
//! - PostgreSQL reports the marker (a dotted name is a custom setting any
//!   session may set).
//!
//! Rejected signals, checked the same way: `server_version` (and the other
//! ParameterStatus values) is the server's own through PgBouncer too;
//! `SHOW pools` and the like reach the server, PgBouncer answers them only
//! on its admin database. The BackendKeyData process id does differ
//! (PgBouncer makes up its cancel keys: 3595707665 against a
//! `pg_backend_pid()` of 470, where PostgreSQL's own are equal), but sqlx
//! keeps it private.

use reposmith_core::{Error, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

use crate::error::{ErrorContext, Phase};
use crate::{PgConfig, PoolerMode};

/// The setting the probe connection sends as a startup option in Direct mode.
const MARKER: (&str, &str) = ("reposmith.pooler_check", "direct");

/// The first connection of [`PgBackend::connect`](crate::PgBackend::connect),
/// proving the server answers and takes the credentials; in Direct mode
/// also that no pooler sits in between, else [`Error::Config`] naming the
/// setting.
pub(crate) async fn open_probe(
    config: &PgConfig,
    options: &PgConnectOptions,
    context: &ErrorContext<'_>,
) -> Result<PgConnection> {
    let connect_error = |e| context.map(e, Phase::Connect);
    if config.pooler == PoolerMode::Transaction {
        return PgConnection::connect_with(options)
            .await
            .map_err(connect_error);
    }
    let marked = options.clone().options([MARKER]);
    let mut probe = PgConnection::connect_with(&marked)
        .await
        .map_err(|e| refused_startup(&e).unwrap_or_else(|| connect_error(e)))?;
    check_direct(&mut probe).await.map_err(connect_error)??;
    Ok(probe)
}

/// How opening a replica's connection failed.
pub(crate) enum Opened {
    /// A pooler sits in front of it in Direct mode: a configuration error.
    Pooler(Error),
    /// It did not answer or refused us: the replica is down for now.
    Failed(sqlx::Error),
}

/// A connection to a replica at `options`, in Direct mode checked like the
/// primary's probe: a replica URL that leads to a pooler is as wrong as a
/// primary URL that does (its reads would use named statements there).
pub(crate) async fn open_replica(
    pooler: PoolerMode,
    options: &PgConnectOptions,
) -> std::result::Result<PgConnection, Opened> {
    if pooler == PoolerMode::Transaction {
        return PgConnection::connect_with(options)
            .await
            .map_err(Opened::Failed);
    }
    let marked = options.clone().options([MARKER]);
    let mut connection =
        PgConnection::connect_with(&marked)
            .await
            .map_err(|e| match refused_startup(&e) {
                Some(refusal) => Opened::Pooler(refusal),
                None => Opened::Failed(e),
            })?;
    match check_direct(&mut connection).await {
        Ok(Ok(())) => Ok(connection),
        Ok(Err(refusal)) => Err(Opened::Pooler(refusal)),
        Err(error) => Err(Opened::Failed(error)),
    }
}

/// The refusal when the server turned the connection away over a startup
/// parameter: PgBouncer (and poolers like it) refuse `options`, which
/// PostgreSQL accepts.
fn refused_startup(error: &sqlx::Error) -> Option<Error> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    db.message()
        .starts_with("unsupported startup parameter")
        .then(|| {
            detected(&format!(
                "the server refused the connection: \"{}\"",
                db.message()
            ))
        })
}

/// Whether the session on `connection` reports [`MARKER`] as sent (a
/// session of PostgreSQL's own); `Err` of [`Error::Config`] when not. One
/// simple-protocol statement, safe whatever sits in between.
async fn check_direct(connection: &mut PgConnection) -> sqlx::Result<Result<()>> {
    let sql = "SELECT current_setting('reposmith.pooler_check', true)";
    let row = sqlx::raw_sql(sql).fetch_one(connection).await?;
    let seen: Option<String> = row.try_get(0)?;
    Ok(match seen.as_deref() == Some(MARKER.1) {
        true => Ok(()),
        false => Err(detected(
            "a setting sent in the startup `options` did not reach the session, so something \
             between reposmith and PostgreSQL dropped it",
        )),
    })
}

fn detected(how: &str) -> Error {
    Error::config(
        "REPOSMITH_PG_POOLER",
        format!(
            "{how}: that is a connection pooler such as PgBouncer. Behind a transaction pooler \
             named prepared statements can return another query's rows, so Direct mode refuses \
             to run there. Set `PgConfig::pooler(PoolerMode::Transaction)` or \
             `REPOSMITH_PG_POOLER=transaction`, or connect to PostgreSQL itself"
        ),
    )
}
