//! [`QueueDestination`]: the outbox relay's deliveries land on their
//! queues once each, however often they are delivered.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use reposmith::queue::{JobEnvelope, Queue, QueueDestination, Worker};
use reposmith_core::outbox::{Deliver, Destination, OutboxMessage};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Task, redis, wait_for_stats};

/// A job of a second queue, to show one destination serves every queue.
#[derive(Debug, Serialize, Deserialize)]
struct Mail {
    to: String,
}

impl reposmith::queue::Job for Mail {
    const QUEUE: &'static str = "mail";
}

fn message(seq: i64, queue: &str, envelope: &JobEnvelope) -> OutboxMessage {
    OutboxMessage::new(
        seq,
        Uuid::now_v7(),
        Destination::queue(queue).unwrap(),
        serde_json::to_value(envelope).unwrap(),
        Utc::now(),
    )
}

#[tokio::test]
async fn messages_delivered_twice_are_enqueued_once() {
    let (_server, backend) = redis().await;
    let mut messages: Vec<OutboxMessage> = (0..5)
        .map(|n| {
            message(
                n,
                "tasks",
                &JobEnvelope::of(&Task::new(n as u32), 1024).unwrap(),
            )
        })
        .collect();
    let mail = JobEnvelope::of(
        &Mail {
            to: "a@example.org".into(),
        },
        1024,
    )
    .unwrap();
    messages.push(message(5, "mail", &mail));
    messages.push(OutboxMessage::new(
        6,
        Uuid::now_v7(),
        Destination::topic("document.stored").unwrap(),
        serde_json::json!({}),
        Utc::now(),
    ));
    // A queue message whose envelope names another queue.
    messages.push(message(7, "tasks", &mail));

    let destination = QueueDestination::new(&backend);
    for delivery in 0..2 {
        let outcomes = destination.deliver(&messages).await;
        assert_eq!(outcomes.len(), messages.len());
        for (i, outcome) in outcomes.iter().enumerate().take(6) {
            assert!(
                outcome.is_ok(),
                "delivery {delivery}, message {i}: {outcome:?}"
            );
        }
        assert!(outcomes[6].is_err(), "a topic message is not a job");
        assert!(outcomes[7].is_err(), "queue and envelope disagree");
    }

    let tasks = Queue::<Task>::new(&backend).unwrap();
    let mails = Queue::<Mail>::new(&backend).unwrap();
    let stats = tasks.stats().await.unwrap();
    assert_eq!((stats.enqueued, stats.deduped, stats.waiting), (5, 5, 5));
    let stats = mails.stats().await.unwrap();
    assert_eq!((stats.enqueued, stats.deduped, stats.waiting), (1, 1, 1));

    let ids = Arc::new(Mutex::new(HashSet::new()));
    let seen = Arc::clone(&ids);
    let worker = Worker::new(tasks.clone())
        .concurrency(2)
        .run(move |ctx| {
            seen.lock().unwrap().insert(ctx.id());
            async { Ok(()) }
        })
        .await
        .unwrap();
    wait_for_stats(&tasks, Duration::from_secs(10), |s| s.completed == 5).await;
    worker.shutdown(Duration::from_secs(2)).await;
    let expected: HashSet<Uuid> = messages[..5].iter().map(|m| m.id).collect();
    assert_eq!(
        *ids.lock().unwrap(),
        expected,
        "job ids are the message ids"
    );

    // Delivered again after completion, within the window: still a duplicate.
    let outcomes = destination.deliver(&messages[..5]).await;
    assert!(outcomes.iter().all(Result::is_ok));
    let stats = tasks.stats().await.unwrap();
    assert_eq!((stats.enqueued, stats.waiting, stats.deduped), (5, 0, 10));
}

/// A job the queue acknowledged and then lost (a Redis master that died
/// before its replica had the write; here: `FLUSHALL` on the test's own
/// server) is sent again by `Outbox::redeliver_unreceipted`, unless its
/// receipt shows its effect was committed; a redelivery of a job Redis
/// still holds is dropped as a duplicate of its message id.
#[tokio::test]
async fn jobs_lost_after_delivery_are_redelivered_unless_receipted() {
    use reposmith::outbox::{Outbox, Receipt, Relay};

    let (_server, backend) = redis().await;
    let db = crate::outbox::fixture::OutboxDb::new().await;
    let unit = db.pg.begin().await.unwrap();
    for n in 0..3 {
        unit.enqueue(&Task::new(n)).unwrap();
    }
    unit.commit().await.unwrap();
    let relay = Relay::new(&db.pg).queues(QueueDestination::new(&backend));
    while relay.relay_once().await.unwrap().taken > 0 {}
    let queue = Queue::<Task>::new(&backend).unwrap();
    assert_eq!(queue.stats().await.unwrap().waiting, 3);

    // The first job's effect was committed: its receipt exists.
    let first: Uuid = reposmith::postgres::sqlx::query_scalar(
        "SELECT id FROM reposmith_outbox ORDER BY seq LIMIT 1",
    )
    .fetch_one(db.pg.pool())
    .await
    .unwrap();
    let receipt = Receipt::new("tasks", first.to_string(), first.to_string()).unwrap();
    let ran = db
        .pg
        .run_once(&receipt, |_| Box::pin(async { Ok(()) }))
        .await
        .unwrap();
    assert!(ran.is_some());

    // Redis loses everything it acknowledged.
    let _: () = reposmith::redis::cmd("FLUSHALL")
        .query_async(&mut backend.connection())
        .await
        .unwrap();
    let outbox = Outbox::new(&db.pg);
    assert_eq!(
        outbox
            .redeliver_unreceipted(Duration::from_secs(60))
            .await
            .unwrap(),
        2,
        "the two jobs without a receipt"
    );
    while relay.relay_once().await.unwrap().taken > 0 {}
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.waiting, stats.deduped), (2, 0), "{stats:?}");

    // Again while Redis holds them: dropped as duplicates of their ids.
    assert_eq!(
        outbox
            .redeliver_unreceipted(Duration::from_secs(60))
            .await
            .unwrap(),
        2
    );
    while relay.relay_once().await.unwrap().taken > 0 {}
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.waiting, stats.deduped), (2, 2), "{stats:?}");
    assert_eq!(outbox.stats().await.unwrap().pending, 0);
    db.cleanup().await;
}
