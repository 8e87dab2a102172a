//! `reposmith outbox`: jobs born in PostgreSQL units of work, carried by the
//! transactional outbox to the Redis queue and run by a reposmith worker.
//!
//! Each of `producers` tasks runs units of work one after another: BEGIN,
//! `unit.enqueue(&job)` for each of its [`Outbox::per_unit`] jobs, COMMIT
//! (which inserts the outbox rows and sends the NOTIFY). A spawned
//! [`Relay`] with default options (batches of 256 rows: one pass moves what
//! piled up while the previous pass ran, and 256 is also the queue's largest
//! enqueue script call, so a full batch is one Redis round trip) wakes on the
//! NOTIFY (LISTEN, not polling) and moves committed rows onto the queue; a
//! reposmith worker with `concurrency(workers)` acknowledges them, as in the
//! `reposmith` contender.
//!
//! A round's rate is its jobs over the time from just before the first
//! BEGIN to the worker's last acknowledgement; each job's latency runs from
//! the moment its unit's `commit()` returned to the moment its handler
//! started (both stamped in this process, so one clock). The relay and the
//! worker start before the timer and are stopped after it.
//!
//! Postgres: `DATABASE_URL` (from `cargo xtask bench`), in a schema of the
//! bench's own (`reposmith_bench_queue_<pid>`, the outbox tables made by
//! `create_outbox_tables`, dropped at teardown); the outbox table is
//! truncated before every round so rounds start alike. The NOTIFY channel
//! is database-wide: other clients' commits on the same database would
//! wake this relay for nothing (an empty pass), not change its result.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reposmith::outbox::{QueueDestination, Relay};
use reposmith::{PgBackend, PgConfig, RedisBackend};

use super::contender::{BoxFut, Contender, Env, Tally, share};
use super::reposmith::{await_acks, backend, check_handled, start_worker};
use crate::Result;
use crate::measure::Sample;

/// Time for the relay's LISTEN and first (empty) pass, and the worker's
/// first fetch, before the timer starts.
const SETTLE: Duration = Duration::from_millis(300);

/// The outbox contender: `per_unit` jobs per unit of work.
#[derive(Debug)]
pub(crate) struct Outbox {
    per_unit: usize,
    schema: String,
    admin: Option<PgBackend>,
    pg: Option<PgBackend>,
    relay: Option<RedisBackend>,
    worker: Option<RedisBackend>,
}

impl Outbox {
    /// `per_unit` jobs per unit of work (at least 1).
    pub(crate) fn new(per_unit: usize) -> Self {
        Self {
            per_unit: per_unit.max(1),
            schema: format!("reposmith_bench_queue_{}_{}", std::process::id(), per_unit),
            admin: None,
            pg: None,
            relay: None,
            worker: None,
        }
    }
}

/// When each job's unit committed and when its handler started, in
/// microseconds since `epoch`; `u64::MAX` until stamped.
struct Stamps {
    epoch: Instant,
    committed: Vec<AtomicU64>,
    handled: Vec<AtomicU64>,
}

impl Stamps {
    fn new(jobs: usize) -> Self {
        let unset = || (0..jobs).map(|_| AtomicU64::new(u64::MAX)).collect();
        Self {
            epoch: Instant::now(),
            committed: unset(),
            handled: unset(),
        }
    }

    fn stamp(&self, slots: &[AtomicU64], id: u64) {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(slot) = usize::try_from(id).ok().and_then(|i| slots.get(i)) {
            // The first handling counts, as in the tally.
            let _ = slot.compare_exchange(u64::MAX, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Commit to handler start, per job stamped on both ends. The handler
    /// may in principle start before the producer task is scheduled again
    /// after `commit()`: such a job counts as zero.
    fn latencies(&self) -> Vec<Duration> {
        self.committed
            .iter()
            .zip(&self.handled)
            .map(|(c, h)| (c.load(Ordering::Relaxed), h.load(Ordering::Relaxed)))
            .filter(|(c, h)| *c != u64::MAX && *h != u64::MAX)
            .map(|(c, h)| Duration::from_micros(h.saturating_sub(c)))
            .collect()
    }
}

impl Contender for Outbox {
    fn label(&self) -> &'static str {
        match self.per_unit {
            1 => "reposmith outbox 1/unit",
            _ => "reposmith outbox 10/unit",
        }
    }

    fn setup<'a>(&'a mut self, env: &'a Env) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let url = std::env::var("DATABASE_URL").map_err(
                |_| "the outbox contender needs DATABASE_URL (cargo xtask bench sets it)",
            )?;
            let admin = PgBackend::connect(&PgConfig::new(url.clone())).await?;
            run_sql(
                &admin,
                &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema),
            )
            .await?;
            run_sql(&admin, &format!("CREATE SCHEMA \"{}\"", self.schema)).await?;
            let sep = if url.contains('?') { '&' } else { '?' };
            let scoped = format!("{url}{sep}options=-c%20search_path%3D{}", self.schema);
            let pg = PgBackend::connect(&PgConfig::new(scoped)).await?;
            pg.create_outbox_tables().await?;
            self.admin = Some(admin);
            self.pg = Some(pg);
            self.relay = Some(backend(env).await?);
            self.worker = Some(backend(env).await?);
            Ok(())
        })
    }

    fn run<'a>(&'a mut self, env: &'a Env, jobs: usize) -> BoxFut<'a, Sample> {
        Box::pin(async move {
            let (Some(pg), Some(relay), Some(worker)) = (&self.pg, &self.relay, &self.worker)
            else {
                return Err("outbox: setup did not run".into());
            };
            run_sql(pg, "TRUNCATE reposmith_outbox").await?;
            let deadline = Instant::now() + env.round_limit;
            let tally = Arc::new(Tally::new(jobs));
            let stamps = Arc::new(Stamps::new(jobs));
            let handle = {
                let stamps = stamps.clone();
                let tally = tally.clone();
                start_worker(worker, env.workers, &tally, move |job| {
                    stamps.stamp(&stamps.handled, job.id)
                })
                .await?
            };
            let relay = Relay::new(pg).queues(QueueDestination::new(relay)).spawn();
            tokio::time::sleep(SETTLE).await;
            let started = Instant::now();
            let producers: Vec<_> = (0..env.producers)
                .map(|p| {
                    let ids = share(jobs, env.producers, p);
                    let work = produce(
                        pg.clone(),
                        ids,
                        self.per_unit,
                        tally.clone(),
                        stamps.clone(),
                    );
                    tokio::spawn(work)
                })
                .collect();
            let mut produced = Ok(());
            for producer in producers {
                if let Err(e) = producer.await.map_err(Into::into).and_then(|r| r) {
                    produced = Err(e);
                }
            }
            let end = match produced {
                Ok(()) => await_acks(&handle, jobs, deadline).await,
                Err(e) => Err(e),
            };
            handle.shutdown(Duration::from_secs(5)).await;
            relay.shutdown().await?;
            let end = end?;
            check_handled(&tally, jobs)?;
            Ok(Sample {
                wall: end.duration_since(started),
                latencies: stamps.latencies(),
                units: jobs as u64,
            })
        })
    }

    fn teardown<'a>(&'a mut self, _env: &'a Env) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.relay = None;
            self.worker = None;
            if let Some(pg) = self.pg.take() {
                pg.close().await;
            }
            if let Some(admin) = self.admin.take() {
                run_sql(
                    &admin,
                    &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema),
                )
                .await?;
                admin.close().await;
            }
            Ok(())
        })
    }
}

/// Runs units of work of `per_unit` jobs each over `ids`, stamping each
/// job's commit time once its unit's `commit()` returned.
async fn produce(
    pg: PgBackend,
    ids: std::ops::Range<usize>,
    per_unit: usize,
    tally: Arc<Tally>,
    stamps: Arc<Stamps>,
) -> Result<()> {
    let ids: Vec<usize> = ids.collect();
    for chunk in ids.chunks(per_unit) {
        let unit = pg.begin().await?;
        for id in chunk {
            unit.enqueue(&tally.job(*id))?;
        }
        unit.commit().await?;
        for id in chunk {
            stamps.stamp(&stamps.committed, *id as u64);
        }
    }
    Ok(())
}

/// One statement of the bench's own (schema names are ours, not input).
async fn run_sql(pg: &PgBackend, sql: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pg.pool())
        .await?;
    Ok(())
}
