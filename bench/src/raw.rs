//! The hand-written sqlx side: the SQL a careful developer would write for
//! each operation, with rows mapped by position.
//!
//! Every statement is a `&'static str`, so sqlx prepares it once per
//! connection and reuses it, exactly as reposmith's cached statements are.

use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use crate::Result;
use crate::item::Item;

const SELECT: &str = "SELECT id, bucket, name, body, score, version, created_at FROM bench_items";

const GET: &str = "SELECT id, bucket, name, body, score, version, created_at FROM bench_items \
     WHERE id = $1";

const GET_MANY: &str = "SELECT id, bucket, name, body, score, version, created_at \
     FROM bench_items WHERE id = ANY($1)";

/// The same order and limit reposmith's `find(..).limit(20)` sends: it always
/// appends the id so the order is total.
const FIND: &str = "SELECT id, bucket, name, body, score, version, created_at FROM bench_items \
     WHERE bucket = $1 ORDER BY id ASC LIMIT $2";

const INSERT: &str = "INSERT INTO bench_items (id, bucket, name, body, score, version, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     RETURNING id, bucket, name, body, score, version, created_at";

/// Checks and bumps the version in the statement, like reposmith's update.
const UPDATE: &str = "UPDATE bench_items SET bucket = $1, name = $2, body = $3, score = $4, \
     version = version + 1 WHERE id = $5 AND version = $6 \
     RETURNING id, bucket, name, body, score, version, created_at";

/// An item from a row in the column order of the statements above.
fn item(row: &PgRow) -> sqlx::Result<Item> {
    Ok(Item {
        id: row.try_get(0)?,
        bucket: row.try_get(1)?,
        name: row.try_get(2)?,
        body: row.try_get(3)?,
        score: row.try_get(4)?,
        version: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

/// Every row, for picking update targets.
pub(crate) async fn all<'c>(db: impl PgExecutor<'c>, limit: i64) -> Result<Vec<Item>> {
    let sql = sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY id LIMIT {limit}"));
    let rows = sqlx::query(sql).fetch_all(db).await?;
    Ok(rows.iter().map(item).collect::<sqlx::Result<_>>()?)
}

/// Inserts a new row and returns it as stored.
pub(crate) async fn insert<'c>(db: impl PgExecutor<'c>, new: &Item) -> Result<Item> {
    let new = new.stamped();
    let row = sqlx::query(INSERT)
        .bind(new.id)
        .bind(new.bucket)
        .bind(&new.name)
        .bind(&new.body)
        .bind(new.score)
        .bind(new.version)
        .bind(new.created_at)
        .fetch_one(db)
        .await?;
    Ok(item(&row)?)
}

/// The row with `id`, if any.
pub(crate) async fn get<'c>(db: impl PgExecutor<'c>, id: Uuid) -> Result<Option<Item>> {
    let row = sqlx::query(GET).bind(id).fetch_optional(db).await?;
    Ok(row.as_ref().map(item).transpose()?)
}

/// The rows with these ids.
pub(crate) async fn get_many<'c>(db: impl PgExecutor<'c>, ids: &[Uuid]) -> Result<Vec<Item>> {
    let rows = sqlx::query(GET_MANY).bind(ids).fetch_all(db).await?;
    Ok(rows.iter().map(item).collect::<sqlx::Result<_>>()?)
}

/// At most `limit` rows of `bucket`, in id order.
pub(crate) async fn find<'c>(
    db: impl PgExecutor<'c>,
    bucket: i32,
    limit: i64,
) -> Result<Vec<Item>> {
    let rows = sqlx::query(FIND)
        .bind(bucket)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows.iter().map(item).collect::<sqlx::Result<_>>()?)
}

/// Writes `it` if its version is current; returns the row with the bumped version.
pub(crate) async fn update<'c>(db: impl PgExecutor<'c>, it: &Item) -> Result<Item> {
    let row = sqlx::query(UPDATE)
        .bind(it.bucket)
        .bind(&it.name)
        .bind(&it.body)
        .bind(it.score)
        .bind(it.id)
        .bind(it.version)
        .fetch_optional(db)
        .await?;
    let row = row.ok_or("update matched no row: stale version")?;
    Ok(item(&row)?)
}
