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

/// A worker whose lease was reclaimed and which leased the job again keeps
/// the newer lease on its books when the old attempt ends: shutdown hands
/// the job back instead of leaving it leased until the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_attempt_ending_keeps_the_newer_lease_on_the_books() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let id = queue.enqueue(&Task::new(1)).await.unwrap().id;
    let (open, gate) = tokio::sync::watch::channel(false);
    let started = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&started);
    let worker = Worker::new(queue.clone())
        .concurrency(2)
        .run(move |ctx| {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut gate = gate.clone();
            async move {
                if ctx.attempt() == 1 {
                    let opened = gate.wait_for(|open| *open);
                    let _ = tokio::time::timeout(Duration::from_secs(20), opened).await;
                } else {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    wait_until("attempt 1 runs", Duration::from_secs(10), || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    // Expire attempt 1's lease: the next fetch reclaims the job and this
    // same worker leases it again.
    let active = format!("{{reposmith:q:{}}}:active", "tasks");
    let _: i64 = reposmith::redis::cmd("ZADD")
        .arg(&active)
        .arg("XX")
        .arg(0)
        .arg(id.to_string())
        .query_async(&mut backend.connection())
        .await
        .unwrap();
    wait_until("attempt 2 runs", Duration::from_secs(10), || async {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    open.send(true).unwrap();
    wait_until(
        "attempt 1's ack refused",
        Duration::from_secs(10),
        || async { worker.counts().stale == 1 },
    )
    .await;

    let report = worker.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.released, [id], "{report:?}");
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.waiting, stats.active), (1, 0), "{stats:?}");
}

/// `BLPOP` failing at once (here: the signal list is a string) while fetches
/// work: the worker pauses between tries instead of spinning, and runs jobs
/// again once the list is usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_wait_for_jobs_backs_off() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let mut conn = backend.connection();
    let signal = "{reposmith:q:tasks}:signal";
    let _: () = reposmith::redis::cmd("SET")
        .arg(signal)
        .arg("not a list")
        .query_async(&mut conn)
        .await
        .unwrap();
    let worker = Worker::new(queue.clone())
        .run(|_ctx| async { Ok(()) })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let blpops = blpop_calls(&mut conn).await;
    // Backoff 50, 100, 200, 400, 800 ms: about 5 tries; a spin does hundreds.
    assert!(
        (1..=30).contains(&blpops),
        "BLPOP ran {blpops} times in 1.5 s"
    );

    let _: () = reposmith::redis::cmd("DEL")
        .arg(signal)
        .query_async(&mut conn)
        .await
        .unwrap();
    queue.enqueue(&Task::new(1)).await.unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 1).await;
    worker.shutdown(Duration::from_secs(2)).await;
}

/// `BLPOP` calls so far, failed ones included (`INFO commandstats`).
async fn blpop_calls(conn: &mut reposmith::RedisConnection) -> u64 {
    let info: String = reposmith::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let Some(line) = info.lines().find(|l| l.starts_with("cmdstat_blpop:")) else {
        return 0;
    };
    line.split([':', ','])
        .filter_map(|field| field.split_once('='))
        .filter(|(name, _)| ["calls", "rejected_calls", "failed_calls"].contains(name))
        .filter_map(|(_, value)| value.parse::<u64>().ok())
        .sum()
}
