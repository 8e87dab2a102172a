//! Exact-checked recall: the server's exact top-k as truth, and recall at a
//! given `ef_search` on a store without the monitor.

use std::sync::Arc;

use reposmith::prelude::*;
use reposmith::{HalfVector, PgRepository};
use sqlx::{PgPool, Row};

use super::{Item, ItemRepository, K, TASKS};
use crate::Result;

/// A hit: id and cosine distance.
pub(super) type Hit = (i64, f64);

/// The exact top-`K` of each query: a sequential scan, computed by the server.
pub(super) async fn truth(pool: &PgPool, queries: &[HalfVector]) -> Result<Vec<Vec<Hit>>> {
    let mut all = Vec::with_capacity(queries.len());
    for query in queries {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql("SET LOCAL enable_indexscan = off")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT id, embedding <=> $1 AS d FROM bench_recall ORDER BY d, id LIMIT $2",
        )
        .bind(query)
        .bind(i64::from(K))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        all.push(
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_>>()?,
        );
    }
    Ok(all)
}

/// recall@k as the monitor counts it: an index hit at most as far as the
/// k-th exact neighbour is correct (ties), the denominator the exact rows.
pub(super) fn recall(exact: &[Hit], found: &[Hit]) -> f64 {
    let Some(&(_, boundary)) = exact.last() else {
        return 1.0;
    };
    let hits = found
        .iter()
        .filter(|(id, d)| *d <= boundary || exact.iter().any(|(e, _)| e == id))
        .count();
    hits.min(exact.len()) as f64 / exact.len() as f64
}

/// Exact-checked recall at a given `ef_search`, on a store without the monitor.
pub(super) struct Grid {
    pub(super) repo: PgRepository<Item>,
    pub(super) queries: Arc<Vec<HalfVector>>,
    pub(super) truth: Arc<Vec<Vec<Hit>>>,
}

impl Grid {
    /// Mean recall@10 of every query at `ef`, searched from `TASKS` tasks.
    pub(super) async fn recall(&self, ef: u32) -> Result<f64> {
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let (repo, queries, truth) = (
                self.repo.clone(),
                Arc::clone(&self.queries),
                Arc::clone(&self.truth),
            );
            handles.push(tokio::spawn(async move {
                let mut sum = 0.0;
                for q in (t..queries.len()).step_by(TASKS) {
                    let hits = repo
                        .search_embedding(queries[q].clone(), K)
                        .ef_search(ef)
                        .await?;
                    let found: Vec<Hit> = hits.iter().map(|h| (h.entity.id, h.score)).collect();
                    sum += recall(&truth[q], &found);
                }
                Ok::<f64, Error>(sum)
            }));
        }
        let mut sum = 0.0;
        for handle in handles {
            sum += handle.await??;
        }
        Ok(sum / self.queries.len() as f64)
    }

    /// The smallest `ef` from `from` on a grid of 2.5 % steps whose recall
    /// reaches `target`, and every (ef, recall) evaluated on the way.
    pub(super) async fn smallest(
        &self,
        target: f64,
        from: u32,
        to: u32,
    ) -> Result<(Option<u32>, Vec<(u32, f64)>)> {
        let mut evaluated = Vec::new();
        let mut ef = from;
        while ef <= to {
            let r = self.recall(ef).await?;
            eprintln!("  grid: ef_search {ef}: {r:.3}");
            evaluated.push((ef, r));
            if r >= target - 1e-9 {
                return Ok((Some(ef), evaluated));
            }
            ef += (ef / 40).max(1);
        }
        Ok((None, evaluated))
    }
}
