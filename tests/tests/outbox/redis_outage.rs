//! The relay in front of a real Redis that is killed, or paused, while
//! units of work keep committing jobs: the rows wait in the outbox (an
//! outage spends none of their attempts), and once Redis answers again every
//! job reaches the queue exactly once.

use std::time::{Duration, Instant};

use reposmith::outbox::{Outbox, QueueDestination, Relay, RelayOptions};
use reposmith::queue::Queue;
use reposmith::{RedisBackend, RedisConfig};
use reposmith_tests::redis_server::RedisServer;

use super::Embed;
use super::fixture::OutboxDb;

async fn commit_jobs(db: &OutboxDb, from: u32, count: u32) {
    for n in from..from + count {
        let unit = db.pg.begin().await.unwrap();
        unit.enqueue(&Embed { n }).unwrap();
        unit.commit().await.unwrap();
    }
}

/// Passes until nothing is pending, for up to 30 s.
async fn relay_until_empty(relay: &Relay, outbox: &Outbox) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox.stats().await.unwrap().pending > 0 {
        assert!(
            Instant::now() < deadline,
            "rows still pending 30 s after Redis came back"
        );
        relay.relay_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_keeps_rows_while_redis_is_down_or_paused() {
    let db = OutboxDb::new().await;
    let mut server = RedisServer::start();
    let config = RedisConfig::new(server.url()).response_timeout(Duration::from_millis(300));
    let redis = RedisBackend::connect(&config).await.unwrap();
    let queue = Queue::<Embed>::new(&redis).unwrap();
    let options = RelayOptions::default()
        .max_attempts(2)
        .poll_interval(Duration::from_millis(50))
        .publish_timeout(Duration::from_secs(1));
    let relay = Relay::new(&db.pg)
        .queue("outbox-test", QueueDestination::new(&redis))
        .unwrap()
        .options(options);
    let outbox = Outbox::new(&db.pg);

    // Killed: units keep committing, passes fail, nothing is lost or killed.
    commit_jobs(&db, 0, 10).await;
    relay_until_empty(&relay, &outbox).await;
    server.stop();
    commit_jobs(&db, 10, 20).await;
    let mut failed_passes = 0;
    for _ in 0..10 {
        failed_passes += relay.relay_once().await.unwrap().retried;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let stats = outbox.stats().await.unwrap();
    assert!(
        failed_passes >= 20,
        "rows were offered while Redis was down: {failed_passes}"
    );
    assert_eq!((stats.pending, stats.dead), (20, 0), "{stats:?}");
    server.restart();
    relay_until_empty(&relay, &outbox).await;
    assert_eq!(queue.stats().await.unwrap().waiting, 30);

    // Paused: DEBUG SLEEP holds every reply for 2 s.
    let pause = server.pause(Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    commit_jobs(&db, 30, 10).await;
    relay.relay_once().await.unwrap();
    pause.join().unwrap();
    relay_until_empty(&relay, &outbox).await;

    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats.waiting, 40,
        "every committed job reached the queue: {stats:?}"
    );
    assert_eq!(
        stats.enqueued, 40,
        "each once (redeliveries deduped by id): {stats:?}"
    );
    assert_eq!(outbox.stats().await.unwrap().dead, 0);
    db.cleanup().await;
}

/// A Redis that may evict jobs (`allkeys-lru`) is refused by the
/// destination's server check: the rows wait, the reason in their
/// `last_error`, none dies; once the policy is fixed they are delivered.
#[tokio::test]
async fn the_relay_keeps_rows_while_the_redis_policy_may_evict_jobs() {
    let db = OutboxDb::new().await;
    let server = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let redis = RedisBackend::connect(&RedisConfig::new(server.url()))
        .await
        .unwrap();
    let options = RelayOptions::default()
        .max_attempts(2)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(1));
    let relay = Relay::new(&db.pg)
        .queue("outbox-test", QueueDestination::new(&redis))
        .unwrap()
        .options(options);
    let outbox = Outbox::new(&db.pg);
    commit_jobs(&db, 0, 3).await;
    for _ in 0..5 {
        relay.relay_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (3, 0), "{stats:?}");
    let errors: Vec<Option<String>> =
        reposmith::postgres::sqlx::query_scalar("SELECT last_error FROM reposmith_outbox")
            .fetch_all(db.pg.pool())
            .await
            .unwrap();
    assert_eq!(errors.len(), 3);
    for error in &errors {
        let error = error.as_deref().unwrap_or_default();
        assert!(error.contains("maxmemory-policy"), "{error}");
    }
    let queue = Queue::<Embed>::new(&redis).unwrap();
    assert_eq!(queue.stats().await.unwrap().enqueued, 0);

    // Fixed: the check runs again and the rows go out.
    let _: () = reposmith::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut redis.connection())
        .await
        .unwrap();
    relay_until_empty(&relay, &outbox).await;
    assert_eq!(queue.stats().await.unwrap().enqueued, 3);
    db.cleanup().await;
}
