//! The server goes away while producers and workers run: killed and
//! restarted (its AOF, fsynced on every write, reloaded), or paused with
//! `DEBUG SLEEP`. Every job still runs; none is lost.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reposmith::queue::{JobEnvelope, Queue, Worker, WorkerHandle};
use reposmith_tests::redis_server::RedisServer;
use uuid::Uuid;

use super::{Task, connect, wait_for_stats, wait_until};

const JOBS: u32 = 300;

/// Enqueues `JOBS` tasks one by one, each retried under its own id until
/// Redis takes it (a retry after a lost reply is a duplicate, not a second
/// job); counts progress in `sent`.
async fn produce(queue: Queue<Task>, sent: Arc<AtomicU32>) {
    for n in 0..JOBS {
        let envelope = JobEnvelope::of(&Task::new(n), 1024).unwrap();
        let id = Uuid::now_v7();
        let mut tries = 0;
        while let Err(error) = queue.enqueue_envelope(envelope.clone(), id).await {
            tries += 1;
            assert!(tries < 200, "job {n} never enqueued: {error}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sent.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

async fn workers(queue: &Queue<Task>, seen: &Arc<Mutex<HashSet<u32>>>) -> Vec<WorkerHandle> {
    let mut handles = Vec::new();
    for _ in 0..2 {
        let seen = Arc::clone(seen);
        let handle = Worker::new(queue.clone())
            .concurrency(4)
            .lease(Duration::from_secs(1))
            .run(move |ctx| {
                let seen = Arc::clone(&seen);
                async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    seen.lock().unwrap().insert(ctx.job().n);
                    Ok(())
                }
            })
            .await
            .unwrap();
        handles.push(handle);
    }
    handles
}

/// Runs producers and workers, calls `outage` once a third of the jobs are
/// in, and checks that every job ran and was completed exactly once.
async fn survive(outage: impl FnOnce(RedisServer) -> RedisServer + Send + 'static) {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let handles = workers(&queue, &seen).await;
    let sent = Arc::new(AtomicU32::new(0));
    let producer = tokio::spawn(produce(queue.clone(), Arc::clone(&sent)));

    wait_until(
        "a third of the jobs were enqueued",
        Duration::from_secs(20),
        || {
            let n = sent.load(Ordering::SeqCst);
            async move { n >= JOBS / 3 }
        },
    )
    .await;
    let server = tokio::task::spawn_blocking(move || outage(server))
        .await
        .unwrap();

    producer.await.unwrap();
    wait_until("every job ran", Duration::from_secs(40), || {
        let n = seen.lock().unwrap().len();
        async move { n == JOBS as usize }
    })
    .await;
    let stats = wait_for_stats(&queue, Duration::from_secs(20), |s| {
        s.completed == u64::from(JOBS)
    })
    .await;
    for handle in handles {
        handle.shutdown(Duration::from_secs(2)).await;
    }
    assert_eq!(
        (stats.dead, stats.waiting, stats.delayed),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.enqueued, u64::from(JOBS), "{stats:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_when_redis_is_killed_and_restarted() {
    survive(|mut server| {
        server.restart();
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_when_redis_pauses_for_two_seconds() {
    survive(|server| {
        server.pause(Duration::from_secs(2)).join().unwrap();
        server
    })
    .await;
}

/// A server whose memory is full under `noeviction` refuses writes with
/// `OOM` until memory frees up: an enqueue then fails with an error of the
/// "unreachable" class (so the outbox relay waits instead of counting a
/// delivery attempt), naming OOM.
#[tokio::test]
async fn an_enqueue_to_a_full_server_is_unavailable_not_refused() {
    let server = RedisServer::start_with(&["--maxmemory", "1mb"]);
    let backend = connect(&server).await;
    let mut conn = backend.connection();
    let filler = "x".repeat(64 * 1024);
    let mut full = false;
    for n in 0..200 {
        let set: Result<(), _> = reposmith::redis::cmd("SET")
            .arg(format!("filler:{n}"))
            .arg(&filler)
            .query_async(&mut conn)
            .await;
        if let Err(error) = set {
            assert_eq!(error.code(), Some("OOM"), "{error}");
            full = true;
            break;
        }
    }
    assert!(full, "1 MB of memory never filled up");
    // The refused SET's own request buffer tipped memory over the limit and
    // is freed now; lower the limit below what the data holds, as when it
    // keeps growing, so every write is refused.
    let info: String = reposmith::redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO memory");
    let _: () = reposmith::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used / 2)
        .query_async(&mut conn)
        .await
        .unwrap();

    let queue = Queue::<Task>::new(&backend).unwrap();
    let error = queue.enqueue(&Task::new(1)).await.unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    assert!(error.to_string().contains("OOM"), "{error}");
}
