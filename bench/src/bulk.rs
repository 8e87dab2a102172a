//! The raw side of `insert_many`: the fastest paths sqlx offers, each
//! stamping ids and timestamps itself as reposmith does.
//!
//! - UNNEST: one array per column, in batches of the size reposmith uses,
//!   all in one transaction (all or nothing, like `insert_many`).
//! - COPY ... FROM STDIN in CSV and in binary format through
//!   `PgConnection::copy_in_raw`, streamed in chunks so the encoded rows
//!   never sit in memory whole. One COPY is one statement, so atomic by itself.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;
use crate::item::Item;

/// Rows per UNNEST statement: reposmith's batch size.
const UNNEST_BATCH: usize = 10_000;
/// Bytes buffered before a CopyData message goes out.
const COPY_CHUNK: usize = 1 << 20;
const COLUMNS: &str = "(id, bucket, name, body, score, version, created_at)";
const UNNEST: &str = "INSERT INTO bench_items (id, bucket, name, body, score, version, created_at) \
     SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::float8[], \
     $6::int8[], $7::timestamptz[])";
/// Postgres' binary COPY signature, flags and header extension length.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Microseconds from the Unix epoch to Postgres' epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Inserts with one UNNEST statement per batch in one transaction.
pub(crate) async fn unnest(pool: &PgPool, items: &[Item]) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let mut total = 0;
    for batch in items.chunks(UNNEST_BATCH) {
        let rows: Vec<Item> = batch.iter().map(Item::stamped).collect();
        let done = sqlx::query(UNNEST)
            .bind(rows.iter().map(|r| r.id).collect::<Vec<Uuid>>())
            .bind(rows.iter().map(|r| r.bucket).collect::<Vec<i32>>())
            .bind(rows.iter().map(|r| r.name.as_str()).collect::<Vec<&str>>())
            .bind(rows.iter().map(|r| r.body.as_str()).collect::<Vec<&str>>())
            .bind(rows.iter().map(|r| r.score).collect::<Vec<f64>>())
            .bind(rows.iter().map(|r| r.version).collect::<Vec<i64>>())
            .bind(
                rows.iter()
                    .map(|r| r.created_at)
                    .collect::<Vec<DateTime<Utc>>>(),
            )
            .execute(&mut *tx)
            .await?;
        total += done.rows_affected();
    }
    tx.commit().await?;
    Ok(total)
}

/// Inserts with `COPY ... FROM STDIN (FORMAT csv)`.
pub(crate) async fn copy_csv(pool: &PgPool, items: &[Item]) -> Result<u64> {
    let statement = format!("COPY bench_items {COLUMNS} FROM STDIN (FORMAT csv)");
    copy(pool, &statement, &[], items, &[], csv_row).await
}

/// Inserts with `COPY ... FROM STDIN (FORMAT binary)`.
pub(crate) async fn copy_binary(pool: &PgPool, items: &[Item]) -> Result<u64> {
    let statement = format!("COPY bench_items {COLUMNS} FROM STDIN (FORMAT binary)");
    // The trailer is a field count of -1.
    let trailer = (-1i16).to_be_bytes();
    copy(pool, &statement, BINARY_HEADER, items, &trailer, binary_row).await
}

async fn copy(
    pool: &PgPool,
    statement: &str,
    header: &[u8],
    items: &[Item],
    trailer: &[u8],
    encode: fn(&mut Vec<u8>, &Item),
) -> Result<u64> {
    let mut connection = pool.acquire().await?;
    let mut copy = connection.copy_in_raw(statement).await?;
    let mut buf = Vec::with_capacity(COPY_CHUNK + 4096);
    buf.extend_from_slice(header);
    for it in items {
        encode(&mut buf, &it.stamped());
        if buf.len() >= COPY_CHUNK {
            copy.send(buf.as_slice()).await?;
            buf.clear();
        }
    }
    buf.extend_from_slice(trailer);
    copy.send(buf.as_slice()).await?;
    Ok(copy.finish().await?)
}

/// One CSV line; text fields are always quoted with inner quotes doubled,
/// which also makes commas and newlines inside them safe.
fn csv_row(buf: &mut Vec<u8>, it: &Item) {
    use std::io::Write;
    let quote = |text: &str| text.replace('"', "\"\"");
    // Writing into a Vec cannot fail.
    let _ = writeln!(
        buf,
        "{},{},\"{}\",\"{}\",{},{},{}",
        it.id,
        it.bucket,
        quote(&it.name),
        quote(&it.body),
        // Rust prints the shortest string that reads back to the same f64.
        it.score,
        it.version,
        it.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    );
}

/// One binary COPY tuple: a field count, then each field as length + bytes.
fn binary_row(buf: &mut Vec<u8>, it: &Item) {
    let field = |buf: &mut Vec<u8>, bytes: &[u8]| {
        buf.extend_from_slice(&i32::try_from(bytes.len()).unwrap_or(i32::MAX).to_be_bytes());
        buf.extend_from_slice(bytes);
    };
    buf.extend_from_slice(&7i16.to_be_bytes());
    field(buf, it.id.as_bytes());
    field(buf, &it.bucket.to_be_bytes());
    field(buf, it.name.as_bytes());
    field(buf, it.body.as_bytes());
    field(buf, &it.score.to_bits().to_be_bytes());
    field(buf, &it.version.to_be_bytes());
    let micros = it.created_at.timestamp_micros() - PG_EPOCH_MICROS;
    field(buf, &micros.to_be_bytes());
}
