//! Leases: renewed while a handler runs, lost by a worker that stalls (its
//! late ack refused), handed back at a graceful shutdown.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reposmith::queue::{Queue, Worker, WorkerCounts};
use reposmith_tests::redis_server::RedisServer;

use super::{Task, connect, redis, wait_for_stats, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_longer_than_its_lease_keeps_the_job() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    queue.enqueue(&Task::new(1)).await.unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let start = |runs: Arc<AtomicU32>| {
        Worker::new(queue.clone())
            .lease(Duration::from_millis(300))
            .run(move |_ctx| {
                runs.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Ok(())
                }
            })
    };
    // Two workers: the second would take the job over if the lease lapsed.
    let first = start(Arc::clone(&runs)).await.unwrap();
    let second = start(Arc::clone(&runs)).await.unwrap();
    let stats = wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 1).await;
    let counts = [
        first.shutdown(Duration::from_secs(2)).await.counts,
        second.shutdown(Duration::from_secs(2)).await.counts,
    ];
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(stats.redelivered, 0, "{stats:?}");
    assert_eq!(counts.iter().map(|c| c.stale).sum::<u64>(), 0, "{counts:?}");
}

/// Runs a worker on a current-thread runtime of its own whose handler
/// blocks that thread for `stall`: no renewal can run meanwhile. Returns the
/// worker's counts once it has settled one attempt (or after 15 s).
fn stalling_worker(
    url: String,
    stall: Duration,
    started: Arc<AtomicU32>,
) -> std::thread::JoinHandle<WorkerCounts> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let backend = connect_url(&url).await;
            let queue = Queue::<Task>::new(&backend).unwrap();
            let worker = Worker::new(queue)
                .lease(Duration::from_millis(300))
                .run(move |_ctx| {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(stall);
                    async { Ok(()) }
                })
                .await
                .unwrap();
            wait_until(
                "the stalled worker settled its attempt",
                Duration::from_secs(15),
                || {
                    let c = worker.counts();
                    async move { c.completed + c.stale + c.uncertain + c.unsettled > 0 }
                },
            )
            .await;
            worker.shutdown(Duration::ZERO).await.counts
        })
    })
}

async fn connect_url(url: &str) -> reposmith::RedisBackend {
    reposmith::RedisBackend::connect(&reposmith::RedisConfig::new(url))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_worker_loses_its_job_and_its_late_ack_is_refused() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    queue.enqueue(&Task::new(7)).await.unwrap();

    let stalled_runs = Arc::new(AtomicU32::new(0));
    let stalled = stalling_worker(
        server.url(),
        Duration::from_millis(2500),
        Arc::clone(&stalled_runs),
    );
    wait_until(
        "the stalling worker took the job",
        Duration::from_secs(10),
        || {
            let n = stalled_runs.load(Ordering::SeqCst);
            async move { n == 1 }
        },
    )
    .await;

    // The takeover outlasts the stall, so the stalled worker's ack comes
    // while the job is still leased (to the other worker): only the fencing
    // token tells the two apart.
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&attempts);
    let healthy = Worker::new(queue.clone())
        .run(move |ctx| {
            seen.lock().unwrap().push(ctx.attempt());
            async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(())
            }
        })
        .await
        .unwrap();
    let stats = wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 1).await;
    let stalled_counts = tokio::task::spawn_blocking(move || stalled.join().unwrap())
        .await
        .unwrap();
    let healthy_counts = healthy.shutdown(Duration::from_secs(2)).await.counts;

    assert_eq!(*attempts.lock().unwrap(), [2], "the takeover is attempt 2");
    assert!(stats.redelivered >= 1, "{stats:?}");
    assert_eq!(healthy_counts.completed, 1);
    assert_eq!(
        stalled_counts.stale, 1,
        "late ack not refused: {stalled_counts:?}"
    );
    assert_eq!(stalled_counts.completed, 0, "{stalled_counts:?}");
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.completed, stats.active, stats.waiting), (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_quick_jobs_finish_and_hands_slow_ones_back() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    queue
        .enqueue_many(&(0..4).map(Task::new).collect::<Vec<_>>())
        .await
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&started);
    let worker = Worker::new(queue.clone())
        .concurrency(4)
        .run(move |ctx| {
            counter.fetch_add(1, Ordering::SeqCst);
            // Quick ones outlast the moment shutdown begins, so they finish
            // within the grace period rather than before it.
            let slow = ctx.job().n >= 2;
            async move {
                let nap = if slow { 30_000 } else { 800 };
                tokio::time::sleep(Duration::from_millis(nap)).await;
                Ok(())
            }
        })
        .await
        .unwrap();
    wait_until("all four jobs started", Duration::from_secs(10), || {
        let n = started.load(Ordering::SeqCst);
        async move { n == 4 }
    })
    .await;
    let report = worker.shutdown(Duration::from_millis(2500)).await;
    assert_eq!(report.finished, 2, "{report:?}");
    assert_eq!(report.released.len(), 2, "{report:?}");
    assert!(report.left_leased.is_empty(), "{report:?}");
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.completed, stats.waiting, stats.active), (2, 2, 0));

    // Another worker completes them; the cancelled attempt did not count.
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&attempts);
    let next = Worker::new(queue.clone())
        .run(move |ctx| {
            seen.lock().unwrap().push((ctx.id(), ctx.attempt()));
            async { Ok(()) }
        })
        .await
        .unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 4).await;
    next.shutdown(Duration::from_secs(2)).await;
    let mut attempts = attempts.lock().unwrap().clone();
    attempts.sort();
    let mut released: Vec<_> = report.released.iter().map(|id| (*id, 1)).collect();
    released.sort();
    assert_eq!(attempts, released);
}
