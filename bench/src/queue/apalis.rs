//! `apalis`: apalis-redis 1.0 with apalis-core's worker, as its README
//! shows it, on its default `Config` (batches of 10, task locks on,
//! results persisted) with only the queue name set.
//!
//! Each of `workers` apalis workers runs on its own `RedisStorage` (its own
//! `ConnectionManager`). An idle apalis worker parks until something wakes
//! it (a finished task, the 30 s heartbeat), so each storage is wrapped in
//! `poll_with_interval` at [`POLL`], apalis' own way to have idle workers
//! look again; workers start before the first enqueue, as in production.
//! A round ends when the last job's result is recorded: apalis acknowledges
//! asynchronously, after the handler returns, by adding the task id to its
//! done set, so the round waits for that set to hold every job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis_core::backend::TaskSink;
use apalis_core::backend::ext::BackendExt;
use apalis_core::error::{BoxDynError, WorkerError};
use apalis_core::task::data::Data;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_redis::{Config, RedisStorage};
use tokio::sync::watch;

use super::contender::{BoxFut, Contender, Env, Job, Tally, share};
use crate::Result;
use crate::measure::Sample;

/// How often an idle worker polls.
const POLL: Duration = Duration::from_millis(10);
const QUEUE: &str = "bench-apalis";

/// The apalis contender; rounds number the worker names (apalis keys
/// workers by name).
#[derive(Debug, Default)]
pub(crate) struct Apalis {
    round: usize,
}

fn config() -> Config {
    Config::default().queue(QUEUE)
}

/// The handler: decode (done by apalis), record, succeed.
async fn handle(job: Job, tally: Data<Arc<Tally>>) -> std::result::Result<(), BoxDynError> {
    tally.0.handled(&job);
    Ok(())
}

impl Contender for Apalis {
    fn label(&self) -> &'static str {
        "apalis-redis 1.0"
    }

    fn setup<'a>(&'a mut self, _env: &'a Env) -> BoxFut<'a, ()> {
        Box::pin(async move { Ok(()) })
    }

    fn run<'a>(&'a mut self, env: &'a Env, jobs: usize) -> BoxFut<'a, Sample> {
        Box::pin(async move {
            self.round += 1;
            let deadline = Instant::now() + env.round_limit;
            let tally = Arc::new(Tally::new(jobs));
            let (stop, stopped) = watch::channel(false);
            let mut workers = Vec::with_capacity(env.workers);
            for w in 0..env.workers {
                let conn = apalis_redis::connect(env.url.as_str()).await?;
                let storage = RedisStorage::<Job>::new(conn)
                    .with_config(config())
                    .poll_with_interval(POLL);
                let worker = WorkerBuilder::new(format!("bench-{}-{w}", self.round))
                    .backend(storage)
                    .data(tally.clone())
                    .build(handle);
                let mut stopped = stopped.clone();
                let signal = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                    Ok::<(), WorkerError>(())
                };
                workers.push(tokio::spawn(worker.run_until(signal)));
            }
            let mut probe = apalis_redis::connect(env.url.as_str()).await?;
            await_count(
                &mut probe,
                "ZCARD",
                &config().workers_set(),
                env.workers,
                deadline,
            )
            .await?;
            let mut sinks = Vec::with_capacity(env.producers);
            for _ in 0..env.producers {
                let conn = apalis_redis::connect(env.url.as_str()).await?;
                sinks.push(RedisStorage::<Job>::new(conn).with_config(config()));
            }
            let started = Instant::now();
            let producers: Vec<_> = sinks
                .into_iter()
                .enumerate()
                .map(|(p, mut sink)| {
                    let ids = share(jobs, env.producers, p);
                    let tally = tally.clone();
                    tokio::spawn(async move {
                        for id in ids {
                            sink.push(tally.job(id)).await.map_err(|e| e.to_string())?;
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            for producer in producers {
                producer.await??;
            }
            await_count(
                &mut probe,
                "SCARD",
                &config().done_jobs_set(),
                jobs,
                deadline,
            )
            .await?;
            let wall = started.elapsed();
            let _ = stop.send(true);
            for worker in workers {
                tokio::time::timeout(Duration::from_secs(10), worker)
                    .await
                    .map_err(|_| "apalis: a worker did not stop within 10 s")??
                    .map_err(|e| format!("apalis worker: {e}"))?;
            }
            if tally.count() != jobs {
                return Err(format!("apalis: {} of {jobs} jobs handled", tally.count()).into());
            }
            Ok(Sample {
                wall,
                latencies: tally.latencies(),
                units: jobs as u64,
            })
        })
    }

    fn teardown<'a>(&'a mut self, _env: &'a Env) -> BoxFut<'a, ()> {
        Box::pin(async move { Ok(()) })
    }
}

/// Polls `command key` (ZCARD or SCARD) every millisecond until it reaches
/// `want`, or fails at `deadline`.
async fn await_count(
    conn: &mut apalis_redis::ConnectionManager,
    command: &str,
    key: &str,
    want: usize,
    deadline: Instant,
) -> Result<()> {
    loop {
        let have: usize = redis::cmd(command).arg(key).query_async(conn).await?;
        if have >= want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "apalis: {command} {key} is {have}, want {want}, at the round limit"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
