//! The single-row and concurrent workloads, each interleaving its sides.

use std::sync::Arc;
use std::time::Instant;

use reposmith::{Repository, Store};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::Result;
use crate::bench::{Bench, Side, Table, connect, own_pool};
use crate::item::{Item, Rng};
use crate::measure::{Sample, interleave, timed};
use crate::raw;

const PAIR: [Side; 2] = [Side::Reposmith, Side::Raw];

fn table(workload: &str, series: Vec<crate::measure::Series<Side>>) -> Table {
    let baseline = series.iter().position(|s| s.side == Side::Raw).unwrap_or(0);
    Table {
        workload: workload.to_owned(),
        unit: "op",
        series,
        baseline,
    }
}

/// `insert` of one new row, returned as stored.
pub(crate) async fn insert(b: &mut Bench) -> Result<Table> {
    let ops = b.opts.ops;
    let buckets = b.opts.buckets();
    let series = interleave(&PAIR, b.opts.rounds, async |side, _| {
        let new = |i: usize| Item::new(i as u64, buckets);
        match side {
            Side::Reposmith => timed(ops, async |i| ok(b.repo.insert(&new(i)).await?)).await,
            _ => timed(ops, async |i| ok(raw::insert(&b.raw, &new(i)).await?)).await,
        }
    })
    .await?;
    Ok(table("single insert", series))
}

/// `get` by id; also raw sqlx on a held connection and reposmith inside a
/// unit of work, to separate the pool's cost from the repository's.
pub(crate) async fn get(b: &mut Bench) -> Result<Table> {
    let sides = [
        Side::Reposmith,
        Side::Raw,
        Side::RawHeld,
        Side::ReposmithUnit,
    ];
    let ops = b.opts.ops;
    let Bench {
        store,
        repo,
        raw,
        held,
        ids,
        ..
    } = b;
    let ids = &*ids;
    let series = interleave(&sides, b.opts.rounds, async |side, round| {
        let mut rng = Rng::new(round as u64);
        let mut id = move || ids[rng.below(ids.len())];
        match side {
            Side::Reposmith => timed(ops, async |_| found(repo.get(&id()).await?)).await,
            Side::Raw => timed(ops, async |_| found(raw::get(&*raw, id()).await?)).await,
            Side::RawHeld => timed(ops, async |_| found(raw::get(&mut **held, id()).await?)).await,
            _ => {
                let unit = store.postgres()?.begin().await?;
                let repo = unit.repo::<Item>();
                let sample = timed(ops, async |_| found(repo.get(&id()).await?)).await;
                unit.commit().await?;
                sample
            }
        }
    })
    .await?;
    Ok(table("get by id", series))
}

/// Discards an operation's result (dropped inside the timed region, as a caller would).
fn ok<T>(_: T) -> Result<()> {
    Ok(())
}

fn found(row: Option<Item>) -> Result<()> {
    row.map(drop)
        .ok_or_else(|| "a seeded row is missing".into())
}

/// `find(bucket = b).limit(20)`, served by the bucket index.
///
/// A quarter of the operations: at about 1 ms each (server time, the same
/// for both sides) the full count would dominate the run.
pub(crate) async fn find(b: &mut Bench) -> Result<Table> {
    let (ops, buckets) = ((b.opts.ops / 4).max(1), b.opts.buckets());
    let series = interleave(&PAIR, b.opts.rounds, async |side, round| {
        let mut rng = Rng::new(round as u64);
        let mut bucket = move || i32::try_from(rng.below(buckets as usize)).unwrap_or(0);
        match side {
            Side::Reposmith => {
                timed(ops, async |_| {
                    let rows = b.repo.find(Item::BUCKET.eq(bucket())).limit(20).await?;
                    twenty(rows.len())
                })
                .await
            }
            _ => {
                timed(ops, async |_| {
                    twenty(raw::find(&b.raw, bucket(), 20).await?.len())
                })
                .await
            }
        }
    })
    .await?;
    Ok(table("find 20 by indexed field", series))
}

fn twenty(n: usize) -> Result<()> {
    if n == 20 {
        Ok(())
    } else {
        Err(format!("find returned {n} rows, not 20").into())
    }
}

/// `update` of a versioned row: both sides rewrite the same rows in turn and
/// keep the returned version, so every update is a current one.
pub(crate) async fn update(b: &mut Bench) -> Result<Table> {
    let ops = b.opts.ops;
    let Bench {
        repo, raw, targets, ..
    } = b;
    let series = interleave(&PAIR, b.opts.rounds, async |side, _| {
        timed(ops, async |i| {
            let n = targets.len();
            let target = &mut targets[i % n];
            target.score += 1.0;
            *target = match side {
                Side::Reposmith => repo.update(target).await?,
                _ => raw::update(&*raw, target).await?,
            };
            Ok(())
        })
        .await
    })
    .await?;
    Ok(table("update (versioned)", series))
}

/// `get_many` of 100 ids drawn at random.
pub(crate) async fn get_many(b: &mut Bench) -> Result<Table> {
    let ops = (b.opts.ops / 10).max(1);
    let Bench { repo, raw, ids, .. } = b;
    let ids = &*ids;
    let series = interleave(&PAIR, b.opts.rounds, async |side, round| {
        let mut rng = Rng::new(round as u64);
        let mut pick =
            move || -> Vec<Uuid> { (0..100).map(|_| ids[rng.below(ids.len())]).collect() };
        timed(ops, async |_| {
            let wanted = pick();
            let rows = match side {
                Side::Reposmith => repo.get_many(&wanted).await?,
                _ => raw::get_many(&*raw, &wanted).await?,
            };
            // Random picks may repeat an id; the rows are the distinct ones.
            if rows.is_empty() {
                Err("get_many returned nothing".into())
            } else {
                Ok(())
            }
        })
        .await
    })
    .await?;
    Ok(table("get_many of 100 ids", series))
}

/// `get` from many tasks at once on a small pool: pool contention.
pub(crate) async fn concurrent_get(b: &mut Bench) -> Result<Table> {
    let (tasks, size) = (b.opts.tasks, b.opts.pool);
    let store = connect(Some(size)).await?;
    let raw = match b.opts.own_pool {
        true => own_pool(Some(size))?,
        false => store.postgres()?.pool().clone(),
    };
    let ids = Arc::new(b.ids.clone());
    let per_task = (b.opts.ops * 2 / tasks).max(1);
    let series = interleave(&PAIR, b.opts.rounds, async |side, round| {
        spread(tasks, per_task, round, &ids, side, &store, &raw).await
    })
    .await?;
    store.close().await;
    let name = format!("get by id, {tasks} tasks, pool of {size}");
    Ok(table(&name, series))
}

async fn spread(
    tasks: usize,
    per_task: usize,
    round: usize,
    ids: &Arc<Vec<Uuid>>,
    side: Side,
    store: &Store,
    raw: &PgPool,
) -> Result<Sample> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let (ids, repo, raw) = (
            Arc::clone(ids),
            store.postgres()?.repo::<Item>(),
            raw.clone(),
        );
        let mut rng = Rng::new((round * tasks + t) as u64);
        // A plain loop: `timed`'s async closure is not provably `Send` for spawn.
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let (id, t) = (ids[rng.below(ids.len())], Instant::now());
                match side {
                    Side::Reposmith => found(repo.get(&id).await?)?,
                    _ => found(raw::get(&raw, id).await?)?,
                }
                latencies.push(t.elapsed());
            }
            Result::<_>::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks * per_task);
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

/// What the pool itself costs: acquire + release with no query, against a
/// bare round trip (`ping`) on a held connection.
pub(crate) async fn pool_overhead(b: &mut Bench) -> Result<Table> {
    let ops = b.opts.ops;
    let Bench { raw, held, .. } = b;
    let sides = [Side::PoolCycle, Side::HeldPing];
    let series = interleave(&sides, b.opts.rounds, async |side, _| match side {
        Side::PoolCycle => timed(ops, async |_| ok(raw.acquire().await?)).await,
        _ => timed(ops, async |_| Ok(held.ping().await?)).await,
    })
    .await?;
    let baseline = 0;
    let workload = "pool cost (diagnostic)".to_owned();
    Ok(Table {
        workload,
        unit: "op",
        series,
        baseline,
    })
}
