//! The queue on the Redis Cluster of `cargo xtask services up --cluster`
//! (`REDIS_CLUSTER_URLS`): jobs born in PostgreSQL units of work, relayed
//! by the outbox, run by a worker while the master owning the queue's slot
//! is killed (SIGKILL) and its replica promoted; and replica
//! acknowledgements of enqueues.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reposmith::outbox::{Outbox, Receipt, Relay, RelayOptions};
use reposmith::queue::{Job, JobError, Queue, QueueDestination, QueueOptions, Worker};
use reposmith::{BoxFuture, Error, Filter, PgBackend, PgUnitOfWork, RedisBackend, RedisConfig};
use reposmith::{Repository, RetryPolicy};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::redis_cluster::{self, Node};
use serde::{Deserialize, Serialize};

use crate::outbox::fixture::OutboxDb;

/// Jobs in the failover run.
const JOBS: u32 = 500;
/// Jobs per unit of work.
const CHUNK: u32 = 10;

/// A job whose effect is one `Doc` row, committed once through its receipt.
#[derive(Debug, Serialize, Deserialize)]
struct Step {
    n: u32,
}

impl Job for Step {
    // Slot 523: the first master's shard (`CLUSTER KEYSLOT {reposmith:q:cluster-failover}`).
    const QUEUE: &'static str = "cluster-failover";
    // A failover costs attempts (expired leases): never dead-letter a job here.
    const RETRY: RetryPolicy =
        RetryPolicy::new(1_000, Duration::from_millis(10), Duration::from_millis(200));
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn idempotency_key(&self) -> Option<String> {
        Some(format!("step-{}", self.n))
    }
}

/// A job of another shard, for the replica acknowledgement test.
#[derive(Debug, Serialize, Deserialize)]
struct Ack {
    n: u32,
}

impl Job for Ack {
    // Slot 12445: the third master's shard, away from the failover test's.
    const QUEUE: &'static str = "cluster-replicas";
}

fn tag(queue: &str) -> String {
    format!("{{reposmith:q:{queue}}}")
}

async fn cluster_backend() -> RedisBackend {
    let config = RedisConfig::cluster(redis_cluster::cluster_urls());
    RedisBackend::connect(&config)
        .await
        .expect("connect to the cluster of `cargo xtask services up --cluster`")
}

fn insert_doc(
    title: String,
) -> impl for<'u> FnOnce(&'u PgUnitOfWork) -> BoxFuture<'u, reposmith::Result<()>> {
    move |unit| Box::pin(async move { unit.repo::<Doc>().insert(&Doc::new(title)).await.map(drop) })
}

/// Commits `JOBS` jobs in units of `CHUNK`, a few milliseconds apart, so
/// the run spans the kill; a unit that fails (it does not here: Postgres is
/// not touched) is a test failure.
async fn produce(pg: PgBackend, produced: Arc<AtomicU32>) {
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(CHUNK as usize) {
        let unit = pg.begin().await.unwrap();
        for n in chunk {
            unit.enqueue(&Step { n: *n }).unwrap();
        }
        unit.commit().await.unwrap();
        produced.fetch_add(CHUNK, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

async fn effects(pg: &PgBackend) -> u64 {
    pg.repo::<Doc>().count(Filter::all()).await.unwrap()
}

/// Waits up to `within` for every effect; returns how many there are.
async fn settle(pg: &PgBackend, within: Duration) -> u64 {
    let started = Instant::now();
    let mut done = effects(pg).await;
    while done < u64::from(JOBS) && started.elapsed() < within {
        tokio::time::sleep(Duration::from_millis(100)).await;
        done = effects(pg).await;
    }
    done
}

/// Deletes what an earlier (failed) run left of `queue`: the queue name is a
/// constant, so its keys are shared between runs.
async fn clear(master: &Node, queue: &str) {
    let pattern = format!("{}:*", tag(queue));
    let mut cursor = 0u64;
    for _ in 0..10_000 {
        let (next, keys): (u64, Vec<String>) = redis_cluster::ask(
            &master.address,
            reposmith::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000),
        )
        .await
        .unwrap();
        if !keys.is_empty() {
            let _: i64 =
                redis_cluster::ask(&master.address, reposmith::redis::cmd("DEL").arg(&keys))
                    .await
                    .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
    panic!("SCAN of {pattern} did not end");
}

#[tokio::test]
async fn queue_survives_a_cluster_master_kill() {
    let started = Instant::now();
    let master = redis_cluster::master_of(&tag(Step::QUEUE)).await;
    redis_cluster::await_synced_replica(&master, Duration::from_secs(20)).await;
    clear(&master, Step::QUEUE).await;
    let db = OutboxDb::new().await;
    let redis = cluster_backend().await;
    let queue = Queue::<Step>::new(&redis).unwrap();

    let relay = Relay::new(&db.pg)
        .queues(QueueDestination::new(&redis))
        .options(
            RelayOptions::default()
                .batch_size(50)
                .poll_interval(Duration::from_millis(100))
                .publish_timeout(Duration::from_secs(2)),
        )
        .spawn();
    let pg = db.pg.clone();
    let worker = Worker::new(queue.clone())
        .concurrency(8)
        .lease(Duration::from_secs(2))
        .run(move |ctx| {
            let pg = pg.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let receipt = Receipt::for_job(ctx.queue(), ctx.id())
                    .map_err(|e| JobError::fatal(e.to_string()))?;
                pg.run_once(&receipt, insert_doc(ctx.idempotency_key()))
                    .await
                    .map(drop)
                    .map_err(|e| JobError::retry(e.to_string()))
            }
        })
        .await
        .unwrap();
    let produced = Arc::new(AtomicU32::new(0));
    let producer = tokio::spawn(produce(db.pg.clone(), Arc::clone(&produced)));

    // Mid-run: the slot's master dies; its replica takes over after the
    // node timeout (2 s) and an election.
    while effects(&db.pg).await < u64::from(JOBS) / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no progress before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = Instant::now();
    let done_at_kill = effects(&db.pg).await;
    redis_cluster::kill(&master);
    let promoted =
        redis_cluster::await_failover(&tag(Step::QUEUE), &master, Duration::from_secs(15)).await;
    let failover = killed_at.elapsed();
    producer.await.unwrap();

    // Every job completes. A job the dead master acknowledged and did not
    // replicate is gone from Redis with its row marked done: the outbox
    // sends the rows without a receipt again.
    let mut done = settle(&db.pg, Duration::from_secs(10)).await;
    let lost_by_failover = u64::from(JOBS) - done;
    let mut redelivered = 0;
    if done < u64::from(JOBS) {
        redelivered = Outbox::new(&db.pg)
            .redeliver_unreceipted(Duration::from_secs(120))
            .await
            .unwrap();
        done = settle(&db.pg, Duration::from_secs(10)).await;
    }
    let report = worker.shutdown(Duration::from_secs(5)).await;
    relay.shutdown().await.unwrap();
    let stats = queue.stats().await.unwrap();
    println!(
        "{JOBS} jobs, master {} (pid {}) killed after {done_at_kill} effects; {} promoted in \
         {failover:?}; lost by the failover: {lost_by_failover}, redelivered by the outbox: \
         {redelivered}; effects {done}; worker {:?}; queue {stats:?}; {:?} in all",
        master.address,
        master.pid,
        promoted.address,
        report.counts,
        started.elapsed()
    );
    assert_eq!(produced.load(Ordering::SeqCst), JOBS);
    assert_eq!(done, u64::from(JOBS), "every job's effect committed once");
    assert_eq!(Outbox::new(&db.pg).stats().await.unwrap().pending, 0);
    assert_eq!(stats.dead, 0, "{stats:?}");
    db.cleanup().await;
}

#[tokio::test]
async fn enqueues_wait_for_a_replica_when_asked() {
    let master = redis_cluster::master_of(&tag(Ack::QUEUE)).await;
    redis_cluster::await_synced_replica(&master, Duration::from_secs(20)).await;
    clear(&master, Ack::QUEUE).await;
    let redis = cluster_backend().await;
    let plain = Queue::<Ack>::new(&redis).unwrap();
    let acked = Queue::<Ack>::with_options(
        &redis,
        QueueOptions::default().replicas_ack(1, Duration::from_secs(1)),
    )
    .unwrap();

    // The cost, printed (timings are not asserted on a shared machine).
    let jobs = 200;
    for (name, queue) in [("without", &plain), ("with", &acked)] {
        let started = Instant::now();
        for n in 0..jobs {
            queue.enqueue(&Ack { n }).await.unwrap();
        }
        println!(
            "{jobs} enqueues {name} replicas_ack(1): {:?} each",
            started.elapsed() / jobs
        );
    }
    assert_eq!(plain.stats().await.unwrap().waiting, u64::from(jobs) * 2);

    // More replicas than the master has: refused as unavailable, not lost.
    let greedy = Queue::<Ack>::with_options(
        &redis,
        QueueOptions::default().replicas_ack(2, Duration::from_millis(100)),
    )
    .unwrap();
    let error = greedy.enqueue(&Ack { n: 9_999 }).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("replicas"), "{error}");
    clear(&master, Ack::QUEUE).await;
}
