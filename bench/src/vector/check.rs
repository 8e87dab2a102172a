//! Proof that the raw side sends reposmith's statement text: a store with a
//! one-connection pool and an application name of its own runs each search
//! once without knobs (so the search is the session's last statement), and
//! the server's `pg_stat_activity.query` for that session must equal the raw
//! constant, byte for byte.

use reposmith::prelude::*;
use reposmith::{PgConfig, Vector};
use sqlx::PgPool;

use super::{Doc, DocRepository, K, pg_config, raw};
use crate::Result;

const APP: &str = "reposmith-bench-sql-check";

/// Fails when reposmith's statement differs from [`raw::UNFILTERED`] or [`raw::FILTERED`].
pub(crate) async fn same_sql(admin: &PgPool, vector: &Vector) -> Result<()> {
    let pg: PgConfig = pg_config()?.max_connections(1).application_name(APP);
    let store = Store::connect(Config::new().with_postgres(pg)).await?;
    let repo = store.postgres()?.repo::<Doc>();
    repo.search_embedding(vector.clone(), K).await?;
    compare(admin, raw::UNFILTERED).await?;
    repo.search_embedding(vector.clone(), K)
        .filter(Doc::SHARD.eq(1))
        .await?;
    compare(admin, raw::FILTERED).await?;
    store.close().await;
    Ok(())
}

async fn compare(admin: &PgPool, expected: &str) -> Result<()> {
    let sent: Vec<String> = sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(APP)
    .fetch_all(admin)
    .await?;
    match sent.as_slice() {
        [one] if one == expected => Ok(()),
        _ => Err(format!("reposmith sent {sent:?}\nthe raw side would send {expected:?}").into()),
    }
}
