//! Writing a unit's recorded messages: one statement, just before COMMIT.

use reposmith_core::Error;
use reposmith_core::outbox::PendingMessage;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::PgBackend;

/// Inserts every message and signals the relay; the notification is
/// delivered by Postgres only if the transaction commits.
const INSERT_SQL: &str = "WITH written AS ( \
     INSERT INTO reposmith_outbox (id, destination, payload) \
     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[]) RETURNING 1) \
     SELECT pg_notify('reposmith_outbox', count(*)::text) FROM written";

/// Inserts `messages` into the outbox table on the unit's connection.
pub(crate) async fn write_pending(
    connection: &mut PgConnection,
    messages: &[PendingMessage],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    let destinations: Vec<String> = messages.iter().map(|m| m.destination.to_string()).collect();
    let payloads: Vec<serde_json::Value> = messages.iter().map(|m| m.payload.clone()).collect();
    sqlx::query(INSERT_SQL)
        .bind(ids)
        .bind(destinations)
        .bind(payloads)
        .execute(connection)
        .await
        .map(drop)
}

/// A failed outbox statement; a missing table is a configuration error (not
/// an outage to wait out) saying how to create it.
pub(crate) fn write_error(backend: &PgBackend, err: sqlx::Error) -> Error {
    let missing_table = err
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42P01");
    match missing_table {
        true => Error::config(
            "outbox",
            "a table of the outbox (reposmith_outbox, reposmith_job_receipts) does not exist: \
             add them to your migrations (Schemas::new().with_outbox()) or create them with \
             PgBackend::create_outbox_tables",
        ),
        false => backend.map_error(err),
    }
}
