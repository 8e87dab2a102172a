//! Failures: retries up to the limit then the dead-letter set, fatal
//! errors, replay and purge, unreadable payloads, and what is refused
//! before anything reaches Redis.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reposmith::queue::{Job, JobEnvelope, JobError, Queue, QueueOptions, Worker, check_server};
use reposmith::{Error, RedisBackend, RedisConfig, RetryPolicy};
use reposmith_tests::closed_port;
use reposmith_tests::redis_server::RedisServer;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Task, connect, redis, wait_for_stats};

/// A job that fails until healed.
#[derive(Debug, Serialize, Deserialize)]
struct Poison {
    id: u32,
}

impl Job for Poison {
    const QUEUE: &'static str = "poison";
    const RETRY: RetryPolicy =
        RetryPolicy::new(3, Duration::from_millis(10), Duration::from_millis(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_job_is_dead_lettered_after_its_attempts_and_replay_runs_it_again() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Poison>::new(&backend).unwrap();
    let added = queue.enqueue(&Poison { id: 9 }).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let healed = Arc::new(AtomicBool::new(false));
    let (c, h) = (Arc::clone(&calls), Arc::clone(&healed));
    let worker = Worker::new(queue.clone())
        .run(move |ctx| {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let healed = h.load(Ordering::SeqCst);
            async move {
                if healed {
                    return Ok(());
                }
                Err(JobError::retry(format!(
                    "boom {n} on attempt {}",
                    ctx.attempt()
                )))
            }
        })
        .await
        .unwrap();
    let stats = wait_for_stats(&queue, Duration::from_secs(10), |s| s.dead == 1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        (stats.retried, stats.dead_lettered, stats.completed),
        (2, 1, 0)
    );

    let dead = queue.dead_letters().list(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, added.id);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error, "boom 3 on attempt 3");
    assert_eq!(dead[0].job::<Poison>().unwrap().id, 9);

    healed.store(true, Ordering::SeqCst);
    assert!(queue.dead_letters().replay(added.id).await.unwrap());
    assert!(
        !queue.dead_letters().replay(added.id).await.unwrap(),
        "not dead any more"
    );
    let stats = wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 1).await;
    let counts = worker.shutdown(Duration::from_secs(2)).await.counts;
    assert_eq!(
        (counts.retried, counts.dead_lettered, counts.completed),
        (2, 1, 1)
    );
    assert_eq!(stats.dead, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_fatal_error_dead_letters_at_once_and_purge_deletes() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let ids: Vec<Uuid> = queue
        .enqueue_many(&(0..3).map(Task::new).collect::<Vec<_>>())
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let worker = Worker::new(queue.clone())
        .run(move |ctx| {
            c.fetch_add(1, Ordering::SeqCst);
            async move {
                Err(JobError::fatal(format!(
                    "task {} is malformed",
                    ctx.job().n
                )))
            }
        })
        .await
        .unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.dead == 3).await;
    worker.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no retries after a fatal error"
    );

    let dead = queue.dead_letters();
    assert!(dead.purge(ids[0]).await.unwrap());
    assert!(!dead.purge(ids[0]).await.unwrap());
    let left = dead.list(0, 10).await.unwrap();
    assert_eq!(left.len(), 2);
    let (first, second) = (
        dead.list(0, 1).await.unwrap(),
        dead.list(1, 5).await.unwrap(),
    );
    assert_eq!((first.len(), second.len()), (1, 1), "pages of one");
    assert_ne!(first[0].id, second[0].id);
    assert!(dead.list(2, 5).await.unwrap().is_empty());
    assert!(left.iter().all(|d| d.last_error.ends_with("is malformed")));
    assert_eq!(dead.purge_all().await.unwrap(), 2);
    assert!(dead.list(0, 10).await.unwrap().is_empty());
    assert!(
        !dead.replay(ids[1]).await.unwrap(),
        "a purged job cannot be replayed"
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.dead, stats.waiting, stats.active), (0, 0, 0));
}

#[tokio::test]
async fn an_unreadable_payload_is_dead_lettered_and_the_worker_keeps_going() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let mut envelope = JobEnvelope::of(&Task::new(1), 1024).unwrap();
    envelope.payload = r#"{"number":1}"#.to_owned();
    let bad = Uuid::now_v7();
    queue.enqueue_envelope(envelope, bad).await.unwrap();
    queue.enqueue(&Task::new(2)).await.unwrap();

    let ran = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ran);
    let worker = Worker::new(queue.clone())
        .run(move |ctx| {
            seen.lock().unwrap().push(ctx.job().n);
            async { Ok(()) }
        })
        .await
        .unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| {
        s.dead == 1 && s.completed == 1
    })
    .await;
    // Still fetching after the bad payload.
    queue.enqueue(&Task::new(3)).await.unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 2).await;
    worker.shutdown(Duration::from_secs(2)).await;

    assert_eq!(*ran.lock().unwrap(), [2, 3]);
    let dead = queue.dead_letters().list(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, bad);
    assert_eq!(dead[0].attempts, 1, "not retried: no retry can fix it");
    let error = &dead[0].last_error;
    assert!(error.contains(&bad.to_string()), "{error}");
    assert!(error.contains("missing field `n`"), "{error}");
}

/// A job whose queue name cannot be a key.
#[derive(Debug, Serialize, Deserialize)]
struct Misnamed;

impl Job for Misnamed {
    const QUEUE: &'static str = "tasks}:*";
}

#[tokio::test]
async fn oversized_payloads_and_bad_names_are_refused_before_redis() {
    // Nothing listens here: a refusal that reached Redis would be a
    // connection error instead.
    let nowhere = format!("redis://127.0.0.1:{}", closed_port());
    let backend = RedisBackend::connect(&RedisConfig::new(nowhere).lazy(true))
        .await
        .unwrap();
    let options = QueueOptions::default().max_payload(64);
    let queue = Queue::<Task>::with_options(&backend, options).unwrap();
    let big = Task {
        n: 1,
        priority: 0,
        key: Some("k".repeat(100)),
    };
    let error = queue.enqueue(&big).await.unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { limit: 64, .. }),
        "{error}"
    );
    let error = queue.enqueue_many(&[Task::new(1), big]).await.unwrap_err();
    assert!(error.to_string().contains("index 1 of 2"), "{error}");

    let mut envelope = JobEnvelope::of(&Task::new(1), 1024).unwrap();
    envelope.queue = "other".to_owned();
    let error = queue
        .enqueue_envelope(envelope, Uuid::now_v7())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");

    let error = Queue::<Misnamed>::new(&backend).unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
    assert!(error.to_string().contains("tasks}:*"), "{error}");
}

#[tokio::test]
async fn a_server_that_may_evict_is_refused_at_startup() {
    let server = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let backend = connect(&server).await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let error = Worker::new(queue)
        .run(|_ctx| async { Ok(()) })
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Config { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("maxmemory-policy"), "{message}");
    assert!(
        message.contains("allkeys-lru") && message.contains("noeviction"),
        "{message}"
    );

    let (_good, backend) = redis().await;
    let check = check_server(&backend).await.unwrap();
    assert_eq!(check.maxmemory_policy.as_deref(), Some("noeviction"));
    assert_eq!(check.persistent, Some(true));
    assert_eq!(check.appendfsync.as_deref(), Some("always"));

    // AOF fsynced once a second: allowed, with a warning.
    let everysec = RedisServer::start_with(&["--appendfsync", "everysec"]);
    let check = check_server(&connect(&everysec).await).await.unwrap();
    assert_eq!(check.persistent, Some(true));
    assert_eq!(check.appendfsync.as_deref(), Some("everysec"));

    // No persistence at all: allowed, with a warning.
    let volatile = RedisServer::start_with(&["--appendonly", "no"]);
    let check = check_server(&connect(&volatile).await).await.unwrap();
    assert_eq!(check.persistent, Some(false));
}

/// A job with a short timeout and two attempts.
#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    n: u32,
}

impl Job for Flaky {
    const QUEUE: &'static str = "flaky";
    const RETRY: RetryPolicy =
        RetryPolicy::new(2, Duration::from_millis(10), Duration::from_millis(10));
    const TIMEOUT: Duration = Duration::from_millis(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_or_panicking_handler_is_a_failed_attempt() {
    // No backtrace for the handler's panic: symbolizing one on a loaded
    // machine can outlast the job's 200 ms timeout, which then wins.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    let (_server, backend) = redis().await;
    let queue = Queue::<Flaky>::new(&backend).unwrap();
    let flaky = queue.enqueue(&Flaky { n: 1 }).await.unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let worker = Worker::new(queue.clone())
        .run(move |ctx| {
            seen.lock().unwrap().push((ctx.job().n, ctx.attempt()));
            let (n, attempt) = (ctx.job().n, ctx.attempt());
            async move {
                match (n, attempt) {
                    (1, 1) => tokio::time::sleep(Duration::from_secs(30)).await,
                    (1, _) => panic!("kaboom"),
                    _ => {}
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.dead == 1).await;
    // The worker survived the panic and still runs jobs.
    queue.enqueue(&Flaky { n: 2 }).await.unwrap();
    let stats = wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 1).await;
    let counts = worker.shutdown(Duration::from_secs(2)).await.counts;

    assert_eq!(*calls.lock().unwrap(), [(1, 1), (1, 2), (2, 1)]);
    assert_eq!((stats.retried, stats.dead_lettered), (1, 1), "{stats:?}");
    assert_eq!(
        (counts.retried, counts.dead_lettered, counts.completed),
        (1, 1, 1)
    );
    let dead = queue.dead_letters().list(0, 10).await.unwrap();
    assert_eq!(dead[0].id, flaky.id);
    assert_eq!(dead[0].last_error, "the handler panicked: kaboom");
}
