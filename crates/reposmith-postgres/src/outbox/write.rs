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

/// [`INSERT_SQL`] for a tenant's unit: each message with the tenant (`$4`).
/// A unit of no tenant leaves the column out, so it still writes to an
/// outbox table created before the column existed.
const INSERT_TENANT_SQL: &str = "WITH written AS ( \
     INSERT INTO reposmith_outbox (id, destination, payload, tenant) \
     SELECT m.id, m.destination, m.payload, $4::text \
     FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[]) AS m (id, destination, payload) \
     RETURNING 1) \
     SELECT pg_notify('reposmith_outbox', count(*)::text) FROM written";

/// Inserts `messages` into the outbox table on the unit's connection, each
/// carrying the tenant of `backend` (the unit's handle) if it has one, in
/// as many statements as keep each one's bound bytes within `max_bind_bytes`
/// (all in the unit's transaction, so still all or nothing). A single
/// message over the cap is `TooLarge` before anything is sent.
pub(crate) async fn write_pending(
    backend: &PgBackend,
    connection: &mut PgConnection,
    messages: &[PendingMessage],
) -> Result<(), Error> {
    let tenant = backend.tenant_setting().map(|t| t.to_string());
    let cap = backend
        .max_bind_bytes()
        .saturating_sub(tenant_size(tenant.as_deref()));
    for chunk in chunks(messages, cap)? {
        insert(connection, chunk, tenant.as_deref())
            .await
            .map_err(|err| write_error(backend, err))?;
    }
    Ok(())
}

/// `messages` cut into runs whose bound bytes stay within `cap`.
fn chunks(messages: &[PendingMessage], cap: usize) -> Result<Vec<&[PendingMessage]>, Error> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, ARRAYS);
    for (i, message) in messages.iter().enumerate() {
        let size = bound_size(message);
        if ARRAYS + size > cap {
            return Err(Error::TooLarge {
                what: format!("outbox message to {}", message.destination),
                size: ARRAYS + size,
                limit: cap,
            });
        }
        if bytes + size > cap {
            chunks.push(&messages[start..i]);
            (start, bytes) = (i, ARRAYS);
        }
        bytes += size;
    }
    if start < messages.len() {
        chunks.push(&messages[start..]);
    }
    Ok(chunks)
}

/// What the tenant parameter adds to the bound bytes.
fn tenant_size(tenant: Option<&str>) -> usize {
    4 + tenant.map_or(0, str::len)
}

/// The three arrays' length words and headers (one dimension each).
const ARRAYS: usize = 3 * (4 + 20);

/// What one message adds to the bound arrays: an element length word and
/// the value, per array (jsonb's version byte included).
fn bound_size(message: &PendingMessage) -> usize {
    let payload = serde_json::to_vec(&message.payload).map_or(0, |bytes| bytes.len());
    (4 + 16) + (4 + message.destination.to_string().len()) + (4 + 1 + payload)
}

async fn insert(
    connection: &mut PgConnection,
    messages: &[PendingMessage],
    tenant: Option<&str>,
) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    let destinations: Vec<String> = messages.iter().map(|m| m.destination.to_string()).collect();
    let payloads: Vec<serde_json::Value> = messages.iter().map(|m| m.payload.clone()).collect();
    let query = match tenant {
        Some(tenant) => sqlx::query(INSERT_TENANT_SQL)
            .bind(ids)
            .bind(destinations)
            .bind(payloads)
            .bind(tenant),
        None => sqlx::query(INSERT_SQL)
            .bind(ids)
            .bind(destinations)
            .bind(payloads),
    };
    query.execute(connection).await.map(drop)
}

/// A failed outbox statement; a missing table, or a table without a column
/// this version writes or reads (created by an older version), is a
/// configuration error (not an outage to wait out) saying how to fix it.
pub(crate) fn write_error(backend: &PgBackend, err: sqlx::Error) -> Error {
    let code = err.as_database_error().and_then(|e| e.code());
    match code.as_deref() {
        Some("42P01") => Error::config(
            "outbox",
            "a table of the outbox (reposmith_outbox, reposmith_job_receipts) does not exist: \
             add them to your migrations (Schemas::new().with_outbox()) or create them with \
             PgBackend::create_outbox_tables",
        ),
        Some("42703") => Error::config(
            "outbox",
            "the outbox table lacks a column this version uses (reposmith_outbox.tenant, \
             added for tenants): generate and apply a migration (Schemas::new().with_outbox(), \
             then `migrate generate`), or run \
             ALTER TABLE reposmith_outbox ADD COLUMN tenant text",
        ),
        _ => backend.map_error(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reposmith_core::job::DEFAULT_MAX_PAYLOAD;
    use reposmith_core::outbox::PendingMessages;

    fn messages(n: usize, payload_chars: usize) -> Vec<PendingMessage> {
        let pending = PendingMessages::new();
        for _ in 0..n {
            let payload = serde_json::Value::String("x".repeat(payload_chars));
            pending
                .publish_json(0, "t", payload, DEFAULT_MAX_PAYLOAD)
                .unwrap();
        }
        pending.take()
    }

    /// Runs stay within the cap, keep every message once and in order, and
    /// a message alone over the cap is refused.
    #[test]
    fn messages_are_cut_into_runs_within_the_cap() {
        let messages = messages(10, 1_000);
        let one = bound_size(&messages[0]);
        let cap = ARRAYS + 3 * one;
        let runs = chunks(&messages, cap).unwrap();
        assert_eq!(
            runs.iter().map(|run| run.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert!(
            runs.iter()
                .all(|run| ARRAYS + run.iter().map(bound_size).sum::<usize>() <= cap)
        );
        assert_eq!(chunks(&messages, usize::MAX).unwrap().len(), 1);
        let err = chunks(&messages, ARRAYS + one - 1).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
        assert!(chunks(&[], 1).unwrap().is_empty());
    }
}
