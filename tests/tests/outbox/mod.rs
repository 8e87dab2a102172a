//! The transactional outbox on a real PostgreSQL: what a unit of work
//! records exists exactly when the unit commits (savepoints included), the
//! relay delivers every committed message once across competing relays,
//! wakes on NOTIFY, retries, gives up into the dead state and replays,
//! keeps ordered destinations in order, keeps a MongoDB projection in step,
//! and a relay or producer killed with SIGKILL loses nothing.

mod crash;
pub(crate) mod fixture;
mod projection;
mod redis_outage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reposmith::job::Job;
use reposmith::outbox::{Deliver, Event, Outbox, OutboxMessage, Receipt, Relay, RelayOptions};
use reposmith::{BoxFuture, Error, Filter, PgUnitOfWork, Repository};
use reposmith_tests::conformance::entities::Doc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use fixture::OutboxDb;

/// A job the tests enqueue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Embed {
    pub(crate) n: u32,
}

impl Job for Embed {
    const QUEUE: &'static str = "outbox-test";
}

/// An event the tests publish.
#[derive(Debug, Serialize)]
struct Stored {
    n: u32,
}

impl Event for Stored {
    const TOPIC: &'static str = "outbox-test.stored";
}

/// An unordered destination that records what it was given and can be
/// told to fail.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) seen: Mutex<Vec<OutboxMessage>>,
    failing: AtomicBool,
    unreachable: AtomicBool,
}

impl Recorder {
    pub(crate) fn ids(&self) -> Vec<Uuid> {
        self.seen.lock().unwrap().iter().map(|m| m.id).collect()
    }

    fn job_numbers(&self) -> Vec<u32> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .map(|m| {
                serde_json::from_str::<Embed>(&m.job().unwrap().payload)
                    .unwrap()
                    .n
            })
            .collect()
    }
}

impl Deliver for Recorder {
    fn deliver<'a>(
        &'a self,
        messages: &'a [OutboxMessage],
    ) -> BoxFuture<'a, Vec<reposmith::Result<()>>> {
        Box::pin(async move {
            if self.unreachable.load(Ordering::SeqCst) {
                return messages
                    .iter()
                    .map(|_| {
                        Err(Error::ConnectionLost {
                            backend: reposmith::Backend::Redis,
                            reason: "connection refused".into(),
                        })
                    })
                    .collect();
            }
            if self.failing.load(Ordering::SeqCst) {
                return messages
                    .iter()
                    .map(|_| Err(Error::config("test destination", "boom: destination down")))
                    .collect();
            }
            self.seen.lock().unwrap().extend(messages.iter().cloned());
            messages.iter().map(|_| Ok(())).collect()
        })
    }
}

/// A shared recorder usable as a relay destination.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shared(pub(crate) Arc<Recorder>);

impl Deliver for Shared {
    fn deliver<'a>(
        &'a self,
        messages: &'a [OutboxMessage],
    ) -> BoxFuture<'a, Vec<reposmith::Result<()>>> {
        self.0.deliver(messages)
    }
}

/// Runs passes until no row is pending, for up to 20 s: rows locked by a
/// relay that was just killed come free only once the server has noticed
/// its connection is gone.
pub(crate) async fn drain_pending(relay: &Relay, pg: &reposmith::PgBackend) {
    let outbox = Outbox::new(pg);
    let deadline = Instant::now() + Duration::from_secs(20);
    while outbox.stats().await.unwrap().pending > 0 {
        assert!(Instant::now() < deadline, "rows still pending after 20 s");
        if relay.relay_once().await.unwrap().taken == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs passes until a pass takes nothing.
pub(crate) async fn drain(relay: &Relay) {
    for _ in 0..1_000 {
        if relay.relay_once().await.unwrap().taken == 0 {
            return;
        }
    }
    panic!("the relay did not drain the outbox in 1,000 passes");
}

#[tokio::test]
async fn messages_exist_exactly_when_their_unit_commits() {
    let db = OutboxDb::new().await;
    let recorder = Shared::default();
    let relay = Relay::new(&db.pg)
        .queue(Embed::QUEUE, recorder.clone())
        .unwrap();

    let unit = db.pg.begin().await.unwrap();
    unit.repo::<Doc>().insert(&Doc::new("kept")).await.unwrap();
    unit.enqueue(&Embed { n: 1 }).unwrap();
    let child = unit.nested().await.unwrap();
    child.enqueue(&Embed { n: 2 }).unwrap();
    child.commit().await.unwrap();
    let child = unit.nested().await.unwrap();
    child.enqueue(&Embed { n: 3 }).unwrap();
    let grandchild = child.nested().await.unwrap();
    grandchild.enqueue(&Embed { n: 4 }).unwrap();
    grandchild.commit().await.unwrap();
    child.rollback().await.unwrap();
    let abandoned = unit.nested().await.unwrap();
    abandoned.enqueue(&Embed { n: 5 }).unwrap();
    drop(abandoned);
    unit.enqueue(&Embed { n: 6 }).unwrap();
    unit.commit().await.unwrap();

    let unit = db.pg.begin().await.unwrap();
    unit.enqueue(&Embed { n: 7 }).unwrap();
    unit.rollback().await.unwrap();
    let unit = db.pg.begin().await.unwrap();
    unit.enqueue(&Embed { n: 8 }).unwrap();
    drop(unit);

    drain(&relay).await;
    assert_eq!(
        recorder.0.job_numbers(),
        [1, 2, 6],
        "commit keeps the unit's and committed children's jobs"
    );
    assert_eq!(db.pg.repo::<Doc>().count(Filter::all()).await.unwrap(), 1);
    let stats = Outbox::new(&db.pg).stats().await.unwrap();
    assert_eq!((stats.pending, stats.done, stats.dead), (0, 3, 0));
    db.cleanup().await;
}

#[tokio::test]
async fn a_child_unit_outliving_its_dropped_parent_records_nothing() {
    let db = OutboxDb::new().await;
    let unit = db.pg.begin().await.unwrap();
    let parent = unit.nested().await.unwrap();
    let child = parent.nested().await.unwrap();
    child.enqueue(&Embed { n: 1 }).unwrap();
    // Fields drop in declaration order: a parent can go before its child.
    drop(parent);
    unit.enqueue(&Embed { n: 2 }).unwrap();
    unit.repo::<Doc>().insert(&Doc::new("after")).await.unwrap();
    let refused = child.enqueue(&Embed { n: 3 }).unwrap_err();
    assert!(refused.to_string().contains("ended"), "{refused}");
    drop(child);
    unit.commit().await.unwrap();

    let recorder = Shared::default();
    drain(&Relay::new(&db.pg).queues(recorder.clone())).await;
    assert_eq!(
        recorder.0.job_numbers(),
        [2],
        "only the unit's own job survived"
    );
    assert_eq!(db.pg.repo::<Doc>().count(Filter::all()).await.unwrap(), 1);
    db.cleanup().await;
}

#[tokio::test]
async fn competing_relays_deliver_every_message_once() {
    let db = OutboxDb::new().await;
    for unit_number in 0..40 {
        let unit = db.pg.begin().await.unwrap();
        for i in 0..15 {
            unit.enqueue(&Embed {
                n: unit_number * 15 + i,
            })
            .unwrap();
        }
        unit.commit().await.unwrap();
    }
    let recorder = Shared::default();
    let options = RelayOptions::default().batch_size(25);
    let relays: Vec<Relay> = (0..3)
        .map(|_| {
            Relay::new(&db.pg)
                .queues(recorder.clone())
                .options(options.clone())
        })
        .collect();
    let runs = relays.iter().map(drain);
    futures_util::future::join_all(runs).await;

    let mut numbers = recorder.0.job_numbers();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..600).collect::<Vec<_>>(),
        "each message delivered exactly once"
    );
    assert_eq!(Outbox::new(&db.pg).stats().await.unwrap().pending, 0);
    db.cleanup().await;
}

#[tokio::test]
async fn notify_wakes_a_sleeping_relay() {
    let db = OutboxDb::new().await;
    let (sent, mut received) = tokio::sync::mpsc::unbounded_channel();
    // A poll interval far longer than the wait below: only NOTIFY can wake it in time.
    let options = RelayOptions::default().poll_interval(Duration::from_secs(60));
    let relay = Relay::new(&db.pg)
        .handler(Stored::TOPIC, move |message: OutboxMessage| {
            let sent = sent.clone();
            async move {
                let _ = sent.send((message.id, Instant::now()));
                Ok(())
            }
        })
        .unwrap()
        .options(options)
        .spawn();
    // Let the relay make its first (empty) pass and start listening.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::new();
    for n in 0..5 {
        let unit = db.pg.begin().await.unwrap();
        let id = unit.publish(&Stored { n }).unwrap();
        let committed = Instant::now();
        unit.commit().await.unwrap();
        let (got, at) = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("NOTIFY woke the relay well before its 60 s poll")
            .unwrap();
        assert_eq!(got, id);
        latencies.push(at.duration_since(committed));
    }
    println!("commit-to-handler latencies: {latencies:?}");
    relay.shutdown().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn failing_deliveries_retry_then_die_and_replay() {
    let db = OutboxDb::new().await;
    let recorder = Shared::default();
    recorder.0.failing.store(true, Ordering::SeqCst);
    let options = RelayOptions::default()
        .max_attempts(3)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(1));
    let relay = Relay::new(&db.pg)
        .queue(Embed::QUEUE, recorder.clone())
        .unwrap()
        .options(options);
    let unit = db.pg.begin().await.unwrap();
    let id = unit.enqueue(&Embed { n: 9 }).unwrap();
    unit.commit().await.unwrap();

    let mut reports = Vec::new();
    for _ in 0..50 {
        let report = relay.relay_once().await.unwrap();
        reports.push(report.clone());
        if report.dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        reports.iter().map(|r| r.retried).sum::<usize>(),
        2,
        "{reports:?}"
    );
    let outbox = Outbox::new(&db.pg);
    let dead = outbox.dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].attempts), (id, 3));
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("boom"),
        "{dead:?}"
    );
    assert_eq!(
        relay.relay_once().await.unwrap().taken,
        0,
        "a dead row is not retried"
    );

    recorder.0.failing.store(false, Ordering::SeqCst);
    assert!(outbox.replay(id).await.unwrap());
    assert!(!outbox.replay(Uuid::now_v7()).await.unwrap());
    drain(&relay).await;
    assert_eq!(recorder.0.ids(), [id]);
    assert_eq!(outbox.stats().await.unwrap().dead, 0);
    db.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_destination_delays_rows_without_killing_them() {
    let db = OutboxDb::new().await;
    let recorder = Shared::default();
    recorder.0.unreachable.store(true, Ordering::SeqCst);
    let options = RelayOptions::default()
        .max_attempts(2)
        .poll_interval(Duration::from_millis(1));
    let relay = Relay::new(&db.pg)
        .queue(Embed::QUEUE, recorder.clone())
        .unwrap()
        .options(options);
    let unit = db.pg.begin().await.unwrap();
    let id = unit.enqueue(&Embed { n: 1 }).unwrap();
    unit.commit().await.unwrap();
    let mut offered = 0;
    for _ in 0..20 {
        offered += relay.relay_once().await.unwrap().retried;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert!(offered >= 5, "offered again while down: {offered}");
    let outbox = Outbox::new(&db.pg);
    assert_eq!(
        outbox.stats().await.unwrap().dead,
        0,
        "an outage is not the message's fault"
    );
    recorder.0.unreachable.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    drain(&relay).await;
    assert_eq!(recorder.0.ids(), [id]);
    db.cleanup().await;
}

#[tokio::test]
async fn a_stuck_ordered_destination_neither_starves_others_nor_spins() {
    let db = OutboxDb::new().await;
    let recorder = Shared::default();
    let options = RelayOptions::default()
        .batch_size(100)
        .poll_interval(Duration::from_secs(60));
    // The handler's peer is down: its first event waits a poll interval.
    let relay = Relay::new(&db.pg)
        .handler(Stored::TOPIC, |_message: OutboxMessage| async {
            Err(Error::ConnectionLost {
                backend: reposmith::Backend::Mongo,
                reason: "peer down".into(),
            })
        })
        .unwrap()
        .queues(recorder.clone())
        .options(options);
    let unit = db.pg.begin().await.unwrap();
    for n in 0..250 {
        unit.publish(&Stored { n }).unwrap();
    }
    for n in 0..150 {
        unit.enqueue(&Embed { n }).unwrap();
    }
    unit.commit().await.unwrap();

    let mut reports = Vec::new();
    for _ in 0..5 {
        reports.push(relay.relay_once().await.unwrap());
    }
    assert_eq!(
        recorder.0.ids().len(),
        150,
        "every job delivered around the stuck topic: {reports:?}"
    );
    // The first pass took 100 events and delivered none: not a backlog to spin on.
    assert!(!reports[0].full, "{reports:?}");
    assert_eq!(
        reports.last().unwrap().taken,
        0,
        "the stuck topic holds its later events back"
    );
    let stats = Outbox::new(&db.pg).stats().await.unwrap();
    assert_eq!((stats.pending, stats.dead), (250, 0));
    db.cleanup().await;
}

#[tokio::test]
async fn an_ordered_handler_sees_commit_order_and_stops_at_a_failure() {
    let db = OutboxDb::new().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(AtomicU32::new(0));
    let (seen2, failures2) = (seen.clone(), failures.clone());
    let relay = Relay::new(&db.pg)
        .handler(Stored::TOPIC, move |message: OutboxMessage| {
            let (seen, failures) = (seen2.clone(), failures2.clone());
            async move {
                let n = message.payload["n"].as_u64().unwrap();
                // The third event fails twice before it goes through.
                if n == 3 && failures.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(Error::config("handler", "not yet"));
                }
                seen.lock().unwrap().push(n);
                Ok(())
            }
        })
        .unwrap()
        .options(
            RelayOptions::default()
                .retry_backoff(Duration::from_millis(1), Duration::from_millis(1)),
        );
    for n in 1..=6 {
        let unit = db.pg.begin().await.unwrap();
        unit.publish(&Stored { n }).unwrap();
        unit.commit().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 6 && Instant::now() < deadline {
        relay.relay_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(failures.load(Ordering::SeqCst), 3);
    db.cleanup().await;
}

#[tokio::test]
async fn a_missing_outbox_table_is_named_and_the_unit_rolls_back() {
    let db = OutboxDb::without_tables().await;
    let unit = db.pg.begin().await.unwrap();
    unit.repo::<Doc>()
        .insert(&Doc::new("not kept"))
        .await
        .unwrap();
    unit.enqueue(&Embed { n: 1 }).unwrap();
    let error = unit.commit().await.unwrap_err();
    assert!(matches!(error, Error::Config { .. }), "{error:?}");
    assert!(error.to_string().contains("with_outbox()"), "{error}");
    assert_eq!(db.pg.repo::<Doc>().count(Filter::all()).await.unwrap(), 0);
    db.cleanup().await;
}

#[tokio::test]
async fn bad_jobs_and_events_are_refused_when_recorded() {
    #[derive(Serialize, Deserialize)]
    struct Huge(String);
    impl Job for Huge {
        const QUEUE: &'static str = "outbox-test";
    }
    #[derive(Serialize, Deserialize)]
    struct BadQueue;
    impl Job for BadQueue {
        const QUEUE: &'static str = "embed:{all}";
    }
    #[derive(Serialize)]
    struct Nul(&'static str);
    impl Event for Nul {
        const TOPIC: &'static str = "outbox-test.nul";
    }
    let db = OutboxDb::new().await;
    let unit = db.pg.begin().await.unwrap();
    let too_large = unit.enqueue(&Huge("x".repeat(600 * 1024))).unwrap_err();
    assert!(matches!(too_large, Error::TooLarge { .. }), "{too_large:?}");
    let bad_name = unit.enqueue(&BadQueue).unwrap_err();
    assert!(bad_name.to_string().contains("embed:{all}"), "{bad_name}");
    let nul = unit.publish(&Nul("a\0b")).unwrap_err();
    assert!(nul.to_string().contains("NUL"), "{nul}");
    let bad_topic = unit.publish_on("no spaces", &1).unwrap_err();
    assert!(
        matches!(bad_topic, Error::InvalidInput { .. }),
        "{bad_topic:?}"
    );
    // The refusals left the unit usable and recorded nothing.
    unit.commit().await.unwrap();
    assert_eq!(Outbox::new(&db.pg).stats().await.unwrap().pending, 0);
    db.cleanup().await;
}

#[tokio::test]
async fn run_once_commits_a_jobs_effects_once() {
    let db = OutboxDb::new().await;
    let receipt = Receipt::new("outbox-test", "doc-42", Uuid::now_v7().to_string()).unwrap();
    fn work(
        title: &'static str,
    ) -> impl for<'u> FnOnce(&'u PgUnitOfWork) -> BoxFuture<'u, reposmith::Result<Uuid>> {
        move |unit| {
            Box::pin(async move { Ok(unit.repo::<Doc>().insert(&Doc::new(title)).await?.id) })
        }
    }
    fn failing(unit: &PgUnitOfWork) -> BoxFuture<'_, reposmith::Result<Uuid>> {
        Box::pin(async move {
            unit.repo::<Doc>().insert(&Doc::new("failed")).await?;
            Err(Error::config("handler", "crashed mid-job"))
        })
    }
    assert!(db.pg.run_once(&receipt, failing).await.is_err());
    assert!(
        db.pg
            .run_once(&receipt, work("first"))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        db.pg
            .run_once(&receipt, work("second"))
            .await
            .unwrap()
            .is_none()
    );
    let titles: Vec<String> = db
        .pg
        .repo::<Doc>()
        .find(Filter::all())
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.title)
        .collect();
    assert_eq!(
        titles,
        ["first"],
        "the failed run left nothing, the duplicate ran nothing"
    );

    // Two deliveries of one job at once: exactly one commits its effects.
    let receipt = Receipt::new("outbox-test", "doc-43", "job-43").unwrap();
    let runs = (0..4).map(|_| db.pg.run_once(&receipt, work("raced")));
    let outcomes = futures_util::future::join_all(runs).await;
    let ran = outcomes
        .into_iter()
        .filter(|o| matches!(o, Ok(Some(_))))
        .count();
    assert_eq!(ran, 1);
    let mut by_title: HashMap<String, usize> = HashMap::new();
    for doc in db.pg.repo::<Doc>().find(Filter::all()).await.unwrap() {
        *by_title.entry(doc.title).or_default() += 1;
    }
    assert_eq!(by_title.get("raced"), Some(&1));
    db.cleanup().await;
}
