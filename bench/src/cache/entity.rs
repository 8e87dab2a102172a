//! The cached entity of the get workloads, its seed, and the raw sqlx get.

use chrono::{DateTime, Utc};
use reposmith::PgBackend;
use reposmith::prelude::*;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use crate::Result;
use crate::item::Item;

/// `crate::item::Item`'s row, cached: a uuid key, an indexed integer, two
/// text fields, a float, a version and a creation time.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_cache_items", cache(ttl = "10m"))]
pub(crate) struct CachedItem {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(index)]
    pub(crate) bucket: i32,
    pub(crate) name: String,
    pub(crate) body: String,
    pub(crate) score: f64,
    #[repo(version)]
    pub(crate) version: i64,
    #[repo(created_at)]
    pub(crate) created_at: DateTime<Utc>,
}

impl From<Item> for CachedItem {
    fn from(it: Item) -> CachedItem {
        CachedItem {
            id: it.id,
            bucket: it.bucket,
            name: it.name,
            body: it.body,
            score: it.score,
            version: it.version,
            created_at: it.created_at,
        }
    }
}

/// What the raw side sends: the statement reposmith's `get` sends, by hand.
const GET: &str = "SELECT id, bucket, name, body, score, version, created_at \
     FROM bench_cache_items WHERE id = $1";

/// The row with `id`, if any, mapped by position.
pub(crate) async fn raw_get<'c>(db: impl PgExecutor<'c>, id: Uuid) -> Result<Option<CachedItem>> {
    let row = sqlx::query(GET).bind(id).fetch_optional(db).await?;
    Ok(row.as_ref().map(item).transpose()?)
}

fn item(row: &PgRow) -> sqlx::Result<CachedItem> {
    Ok(CachedItem {
        id: row.try_get(0)?,
        bucket: row.try_get(1)?,
        name: row.try_get(2)?,
        body: row.try_get(3)?,
        score: row.try_get(4)?,
        version: row.try_get(5)?,
        created_at: row.try_get(6)?,
    })
}

/// Recreates `bench_cache_items` with `rows` rows (through the backend
/// without a cache: no invalidations) and returns `keys` of their ids,
/// spread over the table.
pub(crate) async fn seed(pg: &PgBackend, rows: usize, keys: usize) -> Result<Vec<Uuid>> {
    sqlx::query("DROP TABLE IF EXISTS bench_cache_items")
        .execute(pg.pool())
        .await?;
    pg.create_tables::<CachedItem>().await?;
    let buckets = i32::try_from(rows / 40).unwrap_or(i32::MAX).max(1);
    let seed: Vec<CachedItem> = (0..rows as u64)
        .map(|n| CachedItem::from(Item::new(n, buckets)))
        .collect();
    pg.repo::<CachedItem>().insert_many(&seed).await?;
    sqlx::query("ANALYZE bench_cache_items")
        .execute(pg.pool())
        .await?;
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM bench_cache_items ORDER BY id")
        .fetch_all(pg.pool())
        .await?;
    let step = (ids.len() / keys.max(1)).max(1);
    Ok(ids.into_iter().step_by(step).take(keys).collect())
}
