//! Jobs reach a handler: each once, in priority then FIFO order, deduped at
//! enqueue, not before their start time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use reposmith::queue::{JobEnvelope, Queue, QueueOptions, Worker};
use uuid::Uuid;

use super::{Task, redis, wait_for_stats, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_runs_exactly_once_with_eight_handlers() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    // More than one enqueue script call (256 jobs each).
    let jobs: Vec<Task> = (0..600).map(Task::new).collect();
    let added = queue.enqueue_many(&jobs).await.unwrap();
    assert_eq!(added.len(), 600);
    assert!(added.iter().all(|a| !a.duplicate));

    let runs = Arc::new(Mutex::new(HashMap::<u32, u32>::new()));
    let seen = Arc::clone(&runs);
    let worker = Worker::new(queue.clone())
        .concurrency(8)
        .run(move |ctx| {
            let seen = Arc::clone(&seen);
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                *seen.lock().unwrap().entry(ctx.job().n).or_default() += 1;
                Ok(())
            }
        })
        .await
        .unwrap();
    let stats = wait_for_stats(&queue, Duration::from_secs(20), |s| s.completed == 600).await;
    let report = worker.shutdown(Duration::from_secs(5)).await;
    let counts = report.counts;

    assert_eq!(
        (stats.waiting, stats.active, stats.delayed, stats.dead),
        (0, 0, 0, 0)
    );
    assert_eq!(
        (stats.enqueued, stats.redelivered, stats.retried),
        (600, 0, 0)
    );
    assert_eq!(counts.completed, 600, "{counts:?}");
    assert!(report.released.is_empty(), "{report:?}");
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 600);
    assert!(runs.values().all(|&n| n == 1), "a job ran twice: {runs:?}");
}

#[tokio::test]
async fn lower_priority_values_run_first_then_enqueue_order() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    for (n, priority) in [(1, 5), (2, 0), (3, 5), (4, 1), (5, 0), (6, 1000)] {
        let task = Task {
            n,
            priority,
            key: None,
        };
        queue.enqueue(&task).await.unwrap();
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    let worker = Worker::new(queue.clone())
        .run(move |ctx| {
            seen.lock().unwrap().push(ctx.job().n);
            async { Ok(()) }
        })
        .await
        .unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 6).await;
    worker.shutdown(Duration::from_secs(2)).await;
    assert_eq!(*order.lock().unwrap(), [2, 5, 4, 1, 3, 6]);
}

#[tokio::test]
async fn a_key_or_id_seen_within_the_window_is_enqueued_once() {
    let (_server, backend) = redis().await;
    let options = QueueOptions::default().dedup_window(Duration::from_millis(600));
    let queue = Queue::<Task>::with_options(&backend, options).unwrap();
    let keyed = |n| Task {
        n,
        priority: 0,
        key: Some("embed-chunk-42".to_owned()),
    };
    let first = queue.enqueue(&keyed(1)).await.unwrap();
    let second = queue.enqueue(&keyed(2)).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(
        second.id, first.id,
        "a duplicate names the job holding the key"
    );

    // The same id twice (a relay delivering a message again).
    let id = Uuid::now_v7();
    let envelope = JobEnvelope::of(&Task::new(3), 1024).unwrap();
    let once = queue.enqueue_envelope(envelope.clone(), id).await.unwrap();
    let again = queue.enqueue_envelope(envelope, id).await.unwrap();
    assert!(!once.duplicate && again.duplicate);
    assert_eq!((once.id, again.id), (id, id));

    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.enqueued, stats.deduped, stats.waiting), (2, 2, 2));

    // Once the window has passed, the key is free again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let later = queue.enqueue(&keyed(4)).await.unwrap();
    assert!(!later.duplicate);
    assert_ne!(later.id, first.id);
}

#[tokio::test]
async fn a_delayed_job_runs_once_and_not_before_its_time() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&runs);
    let worker = Worker::new(queue.clone())
        .run(move |_ctx| {
            seen.lock().unwrap().push(Instant::now());
            async { Ok(()) }
        })
        .await
        .unwrap();
    let sent = Instant::now();
    queue
        .enqueue_in(&Task::new(1), Duration::from_millis(700))
        .await
        .unwrap();
    assert_eq!(queue.stats().await.unwrap().delayed, 1);
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 1).await;
    // Another fetch cycle or two: nothing more may arrive.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    worker.shutdown(Duration::from_secs(2)).await;
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 1, "delivered more than once");
    // Redis received it after `sent`, and it is due 700 ms after that.
    let waited = runs[0] - sent;
    assert!(waited >= Duration::from_millis(690), "ran after {waited:?}");
}

#[tokio::test]
async fn a_job_for_the_far_future_stays_delayed_while_leases_come_and_go() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let later = Utc::now() + chrono::Duration::hours(1);
    queue.enqueue_at(&Task::new(1), later).await.unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&runs);
    let worker = Worker::new(queue.clone())
        .lease(Duration::from_millis(200))
        .run(move |ctx| {
            seen.lock().unwrap().push(ctx.job().n);
            async { Ok(()) }
        })
        .await
        .unwrap();
    // Jobs that run meanwhile: the worker fetches, leases, acks and reaps
    // around the far-future one.
    for n in 2..6 {
        queue.enqueue(&Task::new(n)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_until(
        "the four immediate jobs ran",
        Duration::from_secs(10),
        || {
            let done = runs.lock().unwrap().len() == 4;
            async move { done }
        },
    )
    .await;
    worker.shutdown(Duration::from_secs(2)).await;
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.delayed, stats.waiting, stats.active),
        (1, 0, 0),
        "{stats:?}"
    );
    assert!(!runs.lock().unwrap().contains(&1));
}
