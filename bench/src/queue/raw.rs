//! `raw`: the hand-written ceiling, the classic reliable-queue pattern.
//!
//! Producers `LPUSH` each job's JSON onto one list; each worker, on its own
//! connection, `BLMOVE`s the oldest job to its own processing list (so a
//! crash leaves the job there to be recovered), decodes it, runs the no-op
//! handler and acknowledges with `LREM` from its processing list. No
//! retries, no leases, no bookkeeping: what any queue on Redis pays at least.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::contender::{BoxFut, Contender, Env, Tally, share};
use crate::Result;
use crate::measure::Sample;

const QUEUE: &str = "bench:raw:jobs";
/// How long one BLMOVE blocks: below the client's 500 ms response timeout,
/// short enough that idle workers notice the round is over.
const BLOCK_SECS: f64 = 0.1;

/// The raw contender: a client, opened in `setup`.
#[derive(Debug, Default)]
pub(crate) struct Raw {
    client: Option<redis::Client>,
}

/// What the workers of one round share.
struct Round {
    tally: Tally,
    jobs: usize,
    acked: AtomicUsize,
    /// When the last acknowledgement returned.
    last_ack: Mutex<Option<Instant>>,
    deadline: Instant,
}

impl Contender for Raw {
    fn label(&self) -> &'static str {
        "raw LPUSH/BLMOVE/LREM"
    }

    fn setup<'a>(&'a mut self, env: &'a Env) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.client = Some(redis::Client::open(env.url.as_str())?);
            Ok(())
        })
    }

    fn run<'a>(&'a mut self, env: &'a Env, jobs: usize) -> BoxFut<'a, Sample> {
        Box::pin(async move {
            let client = self.client.as_ref().ok_or("raw: setup did not run")?;
            let mut worker_conns = Vec::with_capacity(env.workers);
            for _ in 0..env.workers {
                worker_conns.push(client.get_multiplexed_async_connection().await?);
            }
            let mut producer_conns = Vec::with_capacity(env.producers);
            for _ in 0..env.producers {
                producer_conns.push(client.get_multiplexed_async_connection().await?);
            }
            let round = Arc::new(Round {
                tally: Tally::new(jobs),
                jobs,
                acked: AtomicUsize::new(0),
                last_ack: Mutex::new(None),
                deadline: Instant::now() + env.round_limit,
            });
            let started = Instant::now();
            let workers: Vec<_> = worker_conns
                .into_iter()
                .enumerate()
                .map(|(w, conn)| tokio::spawn(work(conn, w, round.clone())))
                .collect();
            let producers: Vec<_> = producer_conns
                .into_iter()
                .enumerate()
                .map(|(p, conn)| {
                    let ids = share(jobs, env.producers, p);
                    tokio::spawn(produce(conn, ids, round.clone()))
                })
                .collect();
            for task in producers.into_iter().chain(workers) {
                task.await??;
            }
            let end = round.last_ack.lock().await.unwrap_or_else(Instant::now);
            Ok(Sample {
                wall: end.duration_since(started),
                latencies: round.tally.latencies(),
                units: jobs as u64,
            })
        })
    }

    fn teardown<'a>(&'a mut self, _env: &'a Env) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.client = None;
            Ok(())
        })
    }
}

/// LPUSHes jobs `ids`, one command each, as an application enqueues them.
async fn produce(
    mut conn: MultiplexedConnection,
    ids: std::ops::Range<usize>,
    round: Arc<Round>,
) -> Result<()> {
    for id in ids {
        let payload = serde_json::to_string(&round.tally.job(id))?;
        redis::cmd("LPUSH")
            .arg(QUEUE)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await?;
    }
    Ok(())
}

/// Moves, handles and acknowledges jobs until the round's are all acked.
async fn work(mut conn: MultiplexedConnection, w: usize, round: Arc<Round>) -> Result<()> {
    let processing = format!("bench:raw:processing:{w}");
    while round.acked.load(Ordering::Acquire) < round.jobs {
        if Instant::now() >= round.deadline {
            return Err("raw: round not finished within its limit".into());
        }
        let moved: Option<String> = redis::cmd("BLMOVE")
            .arg(QUEUE)
            .arg(&processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(BLOCK_SECS)
            .query_async(&mut conn)
            .await?;
        let Some(payload) = moved else { continue };
        let job = serde_json::from_str(&payload)?;
        round.tally.handled(&job);
        redis::cmd("LREM")
            .arg(&processing)
            .arg(1)
            .arg(&payload)
            .query_async::<i64>(&mut conn)
            .await?;
        if round.acked.fetch_add(1, Ordering::AcqRel) + 1 == round.jobs {
            *round.last_ack.lock().await = Some(Instant::now());
        }
    }
    Ok(())
}
