//! The Redis task queue against Redis servers of the tests' own
//! (`reposmith_tests::redis_server`: noeviction, AOF fsynced on every
//! write): delivery and its order (`delivery`), leases, stalls and shutdown
//! (`leases`), failures and dead letters (`failures`), restarts and pauses
//! of the server (`outages`), the outbox destination (`outbox`), a producer
//! whose clock is skewed (`skew`), SIGTERM with jobs in flight (`sigterm`),
//! the tenant a job carries (`tenants`);
//! and, on the Redis Cluster of `cargo xtask services up --cluster`, a
//! master failover (`cluster`).

#[path = "queue/cluster.rs"]
mod cluster;
#[path = "queue/delivery.rs"]
mod delivery;
#[path = "queue/failures.rs"]
mod failures;
#[path = "queue/leases.rs"]
mod leases;
#[path = "queue/outages.rs"]
mod outages;
#[path = "queue/outbox.rs"]
mod outbox;
#[path = "queue/sigterm.rs"]
mod sigterm;
#[path = "queue/skew.rs"]
mod skew;
#[path = "queue/tenants.rs"]
mod tenants;

use std::future::Future;
use std::time::{Duration, Instant};

use reposmith::queue::{Job, Queue, QueueStats};
use reposmith::{RedisBackend, RedisConfig, RetryPolicy};
use reposmith_tests::redis_server::RedisServer;
use serde::{Deserialize, Serialize};

/// The job most tests enqueue: a number, and optionally a priority and an
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    n: u32,
    #[serde(default)]
    priority: u16,
    #[serde(default)]
    key: Option<String>,
}

impl Task {
    fn new(n: u32) -> Task {
        Task {
            n,
            priority: 0,
            key: None,
        }
    }
}

impl Job for Task {
    const QUEUE: &'static str = "tasks";
    const RETRY: RetryPolicy =
        RetryPolicy::new(5, Duration::from_millis(10), Duration::from_millis(100));
    const TIMEOUT: Duration = Duration::from_secs(20);

    fn priority(&self) -> u16 {
        self.priority
    }

    fn idempotency_key(&self) -> Option<String> {
        self.key.clone()
    }
}

/// A started server and a backend connected to it.
async fn redis() -> (RedisServer, RedisBackend) {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    (server, backend)
}

async fn connect(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(&RedisConfig::new(server.url()))
        .await
        .expect("connect to the test's redis-server")
}

/// Polls `check` every 25 ms until it is true; panics after `within`.
async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not reached within {within:?}");
}

/// Waits until the queue's stats satisfy `done`; returns them.
async fn wait_for_stats<J: Job>(
    queue: &Queue<J>,
    within: Duration,
    done: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < within {
        if let Ok(stats) = queue.stats().await {
            if done(&stats) {
                return stats;
            }
            last = Some(stats);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("queue stats not as expected within {within:?}; last read: {last:?}");
}
