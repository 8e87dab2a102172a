//! Jobs reach a handler: each once, in priority then FIFO order, deduped at
//! enqueue, not before their start time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use reposmith::queue::{JobEnvelope, JobError, Queue, QueueOptions, Worker};
use tokio::sync::watch;
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

/// An idempotency key dedupes while its job waits, runs or is delayed; once
/// the job completed or died, a job with that key is new. A job that lost
/// the key (its window passed and another job took it) does not free it
/// when it completes. Job ids keep deduping for the whole window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_dedupes_only_while_its_job_is_pending() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let short_window = QueueOptions::default().dedup_window(Duration::from_millis(300));
    let short = Queue::<Task>::with_options(&backend, short_window).unwrap();
    let keyed = |n, key: &str| Task {
        n,
        priority: 0,
        key: Some(key.to_owned()),
    };
    // Under an id of the caller's, as the outbox relay enqueues: the id is
    // remembered for the window too (a job id the queue makes is not).
    let envelope = JobEnvelope::of(&keyed(1, "doc-7"), 1024).unwrap();
    let first = queue
        .enqueue_envelope(envelope, Uuid::now_v7())
        .await
        .unwrap();
    assert!(!first.duplicate);
    let waiting = queue.enqueue(&keyed(2, "doc-7")).await.unwrap();
    assert!(waiting.duplicate && waiting.id == first.id, "{waiting:?}");

    // Job 1 and job 7 run until their gate opens; job 5 fails for good.
    let (open_1, gate_1) = watch::channel(false);
    let (open_7, gate_7) = watch::channel(false);
    let worker = Worker::new(queue.clone())
        .concurrency(4)
        .run(move |ctx| {
            let gate = match ctx.job().n {
                1 => Some(gate_1.clone()),
                7 => Some(gate_7.clone()),
                _ => None,
            };
            let n = ctx.job().n;
            async move {
                if let Some(mut gate) = gate {
                    let opened = gate.wait_for(|open| *open);
                    let _ = tokio::time::timeout(Duration::from_secs(20), opened).await;
                }
                if n == 5 {
                    return Err(JobError::fatal("document 7 is gone"));
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.active == 1).await;
    let running = queue.enqueue(&keyed(3, "doc-7")).await.unwrap();
    assert!(running.duplicate && running.id == first.id, "{running:?}");

    open_1.send(true).unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 1).await;
    let after_completion = queue.enqueue(&keyed(4, "doc-7")).await.unwrap();
    assert!(!after_completion.duplicate, "{after_completion:?}");
    assert_ne!(after_completion.id, first.id);
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 2).await;
    // The completed job's id still dedupes (an outbox relay's redelivery).
    let envelope = JobEnvelope::of(&keyed(1, "doc-7"), 1024).unwrap();
    let redelivered = queue.enqueue_envelope(envelope, first.id).await.unwrap();
    assert!(redelivered.duplicate, "{redelivered:?}");

    let doomed = queue.enqueue(&keyed(5, "doc-7")).await.unwrap();
    assert!(!doomed.duplicate);
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.dead == 1).await;
    let after_death = queue.enqueue(&keyed(6, "doc-7")).await.unwrap();
    assert!(!after_death.duplicate && after_death.id != doomed.id);
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 3).await;

    // Job 7 holds "doc-9" for 300 ms only; job 8 (delayed) takes the key
    // over; job 7 completing must leave job 8's hold alone.
    let seven = short.enqueue(&keyed(7, "doc-9")).await.unwrap();
    assert!(!seven.duplicate);
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.active == 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let eight = queue
        .enqueue_in(&keyed(8, "doc-9"), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!eight.duplicate, "the short window has passed: {eight:?}");
    open_7.send(true).unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 4).await;
    let nine = queue.enqueue(&keyed(9, "doc-9")).await.unwrap();
    assert!(nine.duplicate && nine.id == eight.id, "{nine:?}");

    worker.shutdown(Duration::from_secs(2)).await;
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
