//! The tuner's run: real searches from a few tasks on a monitored store
//! until the tuner settles and holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reposmith::HalfVector;
use reposmith::prelude::*;
use reposmith_postgres::PgBackend;
use reposmith_postgres::recall::FieldRecall;

use super::data::Gaussian;
use super::{Item, ItemRepository, K, Options, TASKS};
use crate::Result;

/// How the tuner run went.
pub(super) struct Run {
    pub(super) field: FieldRecall,
    /// Samples measured when the tuner first settled at its final value.
    pub(super) samples_to_settle: u64,
    pub(super) searches: u64,
    pub(super) elapsed: Duration,
    pub(super) dropped: u64,
}

/// Real searches from `TASKS` tasks on `pg` (monitored, tuning) until the
/// tuner settles and holds for one re-check block, or time runs out.
pub(super) async fn tune(
    pg: &PgBackend,
    queries: &Arc<Vec<HalfVector>>,
    opts: &Options,
) -> Result<Run> {
    let stop = Arc::new(AtomicBool::new(false));
    let searches = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let (repo, queries) = (pg.repo::<Item>(), Arc::clone(queries));
        let (stop, searches) = (Arc::clone(&stop), Arc::clone(&searches));
        handles.push(tokio::spawn(async move {
            let mut rng = Gaussian(t as u64 + 99);
            while !stop.load(Ordering::Relaxed) {
                let q = (rng.uniform() * queries.len() as f64) as usize % queries.len();
                repo.search_embedding(queries[q].clone(), K).await?;
                searches.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), Error>(())
        }));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(opts.minutes * 60);
    let block = pg
        .recall()
        .config()
        .tune
        .as_ref()
        .map_or(100, |t| t.max_samples) as u64;
    let mut settled_at: Option<(u32, u64)> = None;
    let mut printed = 0;
    let field = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(field) = pg.recall().report().fields.into_iter().next() else {
            continue;
        };
        let tuning = field.tuning.as_ref().ok_or("no tuner")?;
        let current = field.current.unwrap_or(0);
        if tuning.changes.len() > printed {
            for c in &tuning.changes[printed..] {
                eprintln!(
                    "  tuner: {} -> {} (recall {:.3} over {} samples, {:?})",
                    c.from, c.to, c.recall, c.samples, c.reason
                );
            }
            printed = tuning.changes.len();
        }
        settled_at = match settled_at {
            Some((value, at)) if tuning.settled && value == current => Some((value, at)),
            _ if tuning.settled => Some((current, field.samples)),
            _ => None,
        };
        let held = settled_at.is_some_and(|(_, at)| field.samples >= at + block);
        if held || Instant::now() > deadline {
            break field;
        }
    };
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await??;
    }
    Ok(Run {
        samples_to_settle: settled_at.map_or(field.samples, |(_, at)| at),
        searches: searches.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        dropped: pg.recall().report().dropped,
        field,
    })
}
