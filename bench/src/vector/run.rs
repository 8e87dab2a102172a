//! One side's search, once (for recall) or from many tasks at once (timed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reposmith::prelude::*;
use reposmith::{PgRepository, Vector};
use sqlx::PgPool;

use super::{Case, Doc, DocRepository, K, raw};
use crate::Result;
use crate::bench::Side;
use crate::item::Rng;
use crate::measure::Sample;

/// What the timed tasks share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) repo: PgRepository<Doc>,
    pub(crate) raw: PgPool,
    /// Query vectors and the shard each one filters on.
    pub(crate) queries: Arc<Vec<(Vector, i32)>>,
}

/// The ids `side` finds for one query, in rank order (checked closest first).
pub(crate) async fn ids(s: &Shared, side: Side, case: Case, q: usize) -> Result<Vec<i64>> {
    let (vector, shard) = &s.queries[q];
    let hits: Vec<(i64, f64)> = match side {
        Side::Reposmith => search(&s.repo, case, vector, *shard)
            .await?
            .iter()
            .map(|h| (h.entity.id, h.score))
            .collect(),
        Side::ReposmithNoKnobs => search_no_knobs(&s.repo, case, vector, *shard)
            .await?
            .iter()
            .map(|h| (h.entity.id, h.score))
            .collect(),
        Side::RawBatched => raw::search_batched(&s.raw, case, vector, *shard)
            .await?
            .iter()
            .map(|h| (h.doc.id, h.distance))
            .collect(),
        Side::RawHeld => {
            let mut held = s.raw.acquire().await?;
            let hits = raw::search(&mut *held, case, vector, *shard).await?;
            hits.iter().map(|h| (h.doc.id, h.distance)).collect()
        }
        _ => raw::search(&s.raw, case, vector, *shard)
            .await?
            .iter()
            .map(|h| (h.doc.id, h.distance))
            .collect(),
    };
    if hits.windows(2).any(|w| w[0].1 > w[1].1) {
        return Err(format!("{} returned hits out of distance order", side.label()).into());
    }
    Ok(hits.into_iter().map(|(id, _)| id).collect())
}

/// reposmith's search of `case`, the way an application writes it.
async fn search(
    repo: &PgRepository<Doc>,
    case: Case,
    vector: &Vector,
    shard: i32,
) -> Result<Vec<Scored<Doc>>> {
    let search = repo.search_embedding(vector.clone(), K).ef_search(case.ef);
    search_with(search, case, shard).await
}

/// reposmith's search without `ef_search`: no transaction, the server's default.
async fn search_no_knobs(
    repo: &PgRepository<Doc>,
    case: Case,
    vector: &Vector,
    shard: i32,
) -> Result<Vec<Scored<Doc>>> {
    let search = repo.search_embedding(vector.clone(), K);
    search_with(search, case, shard).await
}

async fn search_with(
    search: reposmith::Search<'_, Doc, PgRepository<Doc>, reposmith::search::ByVector>,
    case: Case,
    shard: i32,
) -> Result<Vec<Scored<Doc>>> {
    Ok(match case.filtered {
        true => search.filter(Doc::SHARD.eq(shard)).await?,
        false => search.await?,
    })
}

/// A timed round: `tasks` tasks each running `per_task` searches back to
/// back on random queries; the sample's wall time spans all of them.
/// Also returns the fewest rows any search returned.
pub(crate) async fn round(
    s: &Shared,
    side: Side,
    case: Case,
    (tasks, per_task): (usize, usize),
    round: usize,
) -> Result<(Sample, usize)> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let s = s.clone();
        // The warm-up round is `usize::MAX`: wrap rather than overflow.
        let rng = Rng::new(round.wrapping_mul(tasks).wrapping_add(t) as u64 + 1);
        handles.push(tokio::spawn(task(s, side, case, per_task, rng)));
    }
    let mut latencies = Vec::with_capacity(tasks * per_task);
    let mut fewest = usize::MAX;
    for handle in handles {
        let (lat, rows) = handle.await??;
        latencies.extend(lat);
        fewest = fewest.min(rows);
    }
    let units = latencies.len() as u64;
    let wall = start.elapsed();
    Ok((
        Sample {
            wall,
            latencies,
            units,
        },
        fewest,
    ))
}

/// One task's searches: latencies and the fewest rows returned.
///
/// A plain loop with the side matched inside: `timed`'s async closure is not
/// provably `Send` for spawn.
async fn task(
    s: Shared,
    side: Side,
    case: Case,
    per_task: usize,
    mut rng: Rng,
) -> Result<(Vec<Duration>, usize)> {
    let mut latencies = Vec::with_capacity(per_task);
    let mut fewest = usize::MAX;
    // The held-connection side takes its connection before the first search.
    let mut held = match side {
        Side::RawHeld => Some(s.raw.acquire().await?),
        _ => None,
    };
    for _ in 0..per_task {
        let (vector, shard) = &s.queries[rng.below(s.queries.len())];
        let t = Instant::now();
        let rows = match (side, held.as_mut()) {
            (Side::Reposmith, _) => search(&s.repo, case, vector, *shard).await?.len(),
            (Side::ReposmithNoKnobs, _) => {
                search_no_knobs(&s.repo, case, vector, *shard).await?.len()
            }
            (Side::RawBatched, _) => raw::search_batched(&s.raw, case, vector, *shard)
                .await?
                .len(),
            (_, Some(conn)) => raw::search(&mut **conn, case, vector, *shard).await?.len(),
            _ => raw::search(&s.raw, case, vector, *shard).await?.len(),
        };
        latencies.push(t.elapsed());
        fewest = fewest.min(rows);
    }
    Ok((latencies, fewest))
}

/// CPU time this process has used so far, in nanoseconds: the sum over its
/// threads of `/proc/self/task/*/schedstat`'s first field (nanosecond
/// resolution, unlike the 10 ms ticks of `/proc/self/stat`). Threads that
/// already exited are not counted; tokio's workers live for the whole run.
pub(crate) fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
