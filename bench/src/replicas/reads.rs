//! Read throughput from `--tasks` tasks: the primary alone against the
//! primary with the replica routing the reads, interleaved rounds of
//! `--seconds` each (see [`crate::measure`]).
//!
//! Each task alternates a filtered top-10 (`search_embedding(v,
//! 10).filter(category = c)`: HNSW with an iterative scan) and a filtered
//! count (`count(category = c AND body contains w)`: a scan of the table),
//! starting with one or the other by its parity, on queries drawn at
//! random. Every search must return 10 rows and every count must equal the
//! primary's own count of the same query, taken before the rounds: the
//! replica answers exactly what the primary would, or the bench fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reposmith::postgres::ReadStats;
use reposmith::prelude::*;
use reposmith::{PgBackend, PgRepository};

use super::Options;
use super::data::{Data, Query, ReplicaDoc, ReplicaDocRepository};
use crate::Result;
use crate::bench::{Side, Table};
use crate::measure::{Sample, interleave};

/// Results per search.
const K: u32 = 10;

/// The counts the primary gives, by query index: what every count must answer.
type Expected = Arc<HashMap<usize, u64>>;

/// One read of the mix: query `i`'s search or its count.
async fn read(
    repo: &PgRepository<ReplicaDoc>,
    queries: &[Query],
    expected: &Expected,
    i: usize,
    search: bool,
) -> Result<()> {
    let q = &queries[i];
    if search {
        let hits = repo
            .search_embedding(q.vector.clone(), K)
            .filter(ReplicaDoc::CATEGORY.eq(q.category))
            .await?;
        return match hits.len() == K as usize {
            true => Ok(()),
            false => Err(format!("a search returned {} rows, not {K}", hits.len()).into()),
        };
    }
    let filter = ReplicaDoc::CATEGORY
        .eq(q.category)
        .and(ReplicaDoc::BODY.contains(q.word));
    let n = repo.count(filter).await?;
    match expected.get(&i) {
        Some(&want) if want == n => Ok(()),
        want => Err(format!("count of query {i} answered {n}, the primary {want:?}").into()),
    }
}

/// `tasks` tasks reading the mix for `length`; the sample's wall time
/// spans them all (the last read started before the end finishes).
async fn mix(
    repo: &PgRepository<ReplicaDoc>,
    data: &Data,
    expected: &Expected,
    tasks: usize,
    length: Duration,
    round: usize,
) -> Result<Sample> {
    let start = Instant::now();
    let until = start + length;
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let (repo, queries, expected) = (
            repo.clone(),
            Arc::clone(&data.queries),
            Arc::clone(expected),
        );
        let mut rng = crate::cache::rng(round, t);
        // A plain loop: `timed`'s async closure is not provably `Send` for spawn.
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut search = t % 2 == 0;
            while Instant::now() < until {
                let (i, at) = (rng.below(queries.len()), Instant::now());
                read(&repo, &queries, &expected, i, search).await?;
                latencies.push(at.elapsed());
                search = !search;
            }
            Result::<_>::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await??);
    }
    let units = latencies.len() as u64;
    Ok(Sample {
        wall: start.elapsed(),
        latencies,
        units,
    })
}

/// Every query's count on the primary.
async fn expected_counts(primary: &PgBackend, data: &Data) -> Result<Expected> {
    let repo = primary.repo::<ReplicaDoc>();
    let mut counts = HashMap::with_capacity(data.queries.len());
    for (i, q) in data.queries.iter().enumerate() {
        let filter = ReplicaDoc::CATEGORY
            .eq(q.category)
            .and(ReplicaDoc::BODY.contains(q.word));
        counts.insert(i, repo.count(filter).await?);
    }
    Ok(Arc::new(counts))
}

/// `after - before`, counter by counter.
pub(crate) fn delta(before: ReadStats, after: ReadStats) -> ReadStats {
    let mut d = after;
    d.primary -= before.primary;
    d.replicas -= before.replicas;
    d.fallbacks -= before.fallbacks;
    d.waits -= before.waits;
    d.waited_us -= before.waited_us;
    d
}

/// Adds `more` to `total`, counter by counter.
pub(crate) fn add(total: &mut ReadStats, more: ReadStats) {
    total.primary += more.primary;
    total.replicas += more.replicas;
    total.fallbacks += more.fallbacks;
    total.waits += more.waits;
    total.waited_us += more.waited_us;
}

/// The interleaved rounds; returns the table (baseline: the primary alone)
/// and where the routed side's measured reads ran.
pub(crate) async fn run(
    o: &Options,
    primary: &PgBackend,
    routed: &PgBackend,
    data: &Data,
) -> Result<(Table, ReadStats)> {
    let expected = expected_counts(primary, data).await?;
    let sides = [Side::PrimaryOnly, Side::Routed];
    let mut stats = ReadStats::default();
    let series = interleave(&sides, o.rounds, async |side, round| {
        let pg = match side {
            Side::Routed => routed,
            _ => primary,
        };
        let before = routed.read_stats();
        let repo = pg.repo::<ReplicaDoc>();
        let sample = mix(&repo, data, &expected, o.tasks, o.seconds, round).await?;
        if side == Side::Routed && round != usize::MAX {
            add(&mut stats, delta(before, routed.read_stats()));
        }
        Ok(sample)
    })
    .await?;
    let table = Table {
        workload: format!("top-10 + count mix, {} tasks", o.tasks),
        unit: "read",
        series,
        baseline: 0,
    };
    Ok((table, stats))
}
