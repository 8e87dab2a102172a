//! Jobs carry the tenant they were enqueued for, end to end: from a
//! tenant's queue handle, and from a tenant's unit of work through the
//! outbox row (its `tenant` column) and the relay; the worker's context
//! hands it to the handler. Idempotency keys dedupe per tenant. A job
//! stored before jobs carried tenants still runs, with no tenant, and an
//! outbox table without the tenant column still takes units of no tenant.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reposmith::outbox::{Handler, OutboxMessage, Relay};
use reposmith::queue::{Queue, QueueDestination, Worker};
use reposmith::{PgBackend, RedisBackend};
use serde::{Deserialize, Serialize};

use super::{Task, redis, wait_for_stats};

/// Runs `queue`'s jobs until `count` completed; each job's number and the
/// setting of the tenant its context carried.
async fn run_all(queue: &Queue<Task>, count: u64) -> BTreeMap<u32, Option<String>> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let record = Arc::clone(&seen);
    let worker = Worker::new(queue.clone())
        .concurrency(2)
        .run(move |ctx| {
            let tenant = ctx.tenant().map(|t| t.setting());
            record.lock().unwrap().insert(ctx.job().n, tenant);
            async { Ok(()) }
        })
        .await
        .unwrap();
    wait_for_stats(queue, Duration::from_secs(10), |s| s.completed == count).await;
    worker.shutdown(Duration::from_secs(2)).await;
    seen.lock().unwrap().clone()
}

fn keyed(n: u32, key: &str) -> Task {
    Task {
        key: Some(key.to_owned()),
        ..Task::new(n)
    }
}

#[tokio::test]
async fn a_tenants_queue_handle_tags_its_jobs_and_the_worker_hands_the_tenant_on() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let acme = queue.for_tenant("acme").unwrap();
    let globex = queue.for_tenant("globex").unwrap();
    assert_eq!(acme.tenant().map(|t| t.setting()).as_deref(), Some("acme"));
    acme.enqueue(&Task::new(1)).await.unwrap();
    globex.enqueue_many(&[Task::new(2)]).await.unwrap();
    queue.enqueue(&Task::new(3)).await.unwrap();
    // One idempotency key, two tenants: neither drops the other's job.
    assert!(!acme.enqueue(&keyed(4, "reindex")).await.unwrap().duplicate);
    assert!(
        !globex
            .enqueue(&keyed(5, "reindex"))
            .await
            .unwrap()
            .duplicate
    );
    assert!(!queue.enqueue(&keyed(6, "reindex")).await.unwrap().duplicate);
    assert!(acme.enqueue(&keyed(7, "reindex")).await.unwrap().duplicate);
    assert!(queue.enqueue(&keyed(8, "reindex")).await.unwrap().duplicate);
    assert!(matches!(
        queue.for_tenant(""),
        Err(reposmith::Error::InvalidInput { .. })
    ));
    let seen = run_all(&queue, 6).await;
    let tenant = |t: &str| Some(t.to_owned());
    let expected = BTreeMap::from([
        (1, tenant("acme")),
        (2, tenant("globex")),
        (3, None),
        (4, tenant("acme")),
        (5, tenant("globex")),
        (6, None),
    ]);
    assert_eq!(seen, expected);
    // Completed, the key is free again, per tenant.
    assert!(!acme.enqueue(&keyed(9, "reindex")).await.unwrap().duplicate);
}

/// A job hash as the queue stored it before jobs carried tenants (no
/// `tenant` field, the fields the old enqueue script wrote) runs, with no
/// tenant.
#[tokio::test]
async fn a_job_stored_before_jobs_carried_tenants_still_runs() {
    let (_server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let tag = "{reposmith:q:tasks}:";
    let mut conn = backend.connection();
    let _: () = reposmith::redis::cmd("HSET")
        .arg(format!("{tag}job:{id}"))
        .arg(&[
            ("payload", r#"{"n":41}"#),
            ("attempts", "0"),
            ("max_attempts", "3"),
            ("backoff_base", "10"),
            ("backoff_max", "100"),
            ("timeout", "20000"),
            ("priority", "0"),
            ("key", ""),
            ("token", "0"),
            ("seq", "1"),
            ("enqueued_at", "0"),
        ])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = reposmith::redis::cmd("ZADD")
        .arg(format!("{tag}wait"))
        .arg(1)
        .arg(&id)
        .query_async(&mut conn)
        .await
        .unwrap();
    let seen = run_all(&queue, 1).await;
    assert_eq!(seen, BTreeMap::from([(41, None)]));
}

/// An event of a tenant's unit, for the handler destination.
#[derive(Debug, Serialize, Deserialize)]
struct Noted {
    n: u32,
}

impl reposmith::outbox::Event for Noted {
    const TOPIC: &'static str = "noted";
}

/// The outbox rows' `tenant` column, by the order they were written.
async fn tenant_column(pg: &PgBackend) -> Vec<Option<String>> {
    reposmith::postgres::sqlx::query_scalar("SELECT tenant FROM reposmith_outbox ORDER BY seq")
        .fetch_all(pg.pool())
        .await
        .unwrap()
}

/// Relays every pending row of `pg`'s outbox to `backend`'s queues and to
/// a handler of topic `noted`; the handler's (n, tenant) pairs.
async fn relay_all(pg: &PgBackend, backend: &RedisBackend) -> BTreeMap<u32, Option<String>> {
    let events = Arc::new(Mutex::new(BTreeMap::new()));
    let record = Arc::clone(&events);
    let handler = Handler::new(move |message: OutboxMessage| {
        let record = Arc::clone(&record);
        async move {
            let event: Noted = message.decode()?;
            let tenant = message.tenant.as_ref().map(|t| t.setting());
            record.lock().unwrap().insert(event.n, tenant);
            Ok(())
        }
    });
    let relay = Relay::new(pg)
        .queues(QueueDestination::new(backend))
        .topic(<Noted as reposmith::outbox::Event>::TOPIC, handler)
        .unwrap();
    while relay.relay_once().await.unwrap().taken > 0 {}
    events.lock().unwrap().clone()
}

#[tokio::test]
async fn a_tenants_unit_of_work_carries_its_tenant_through_the_outbox_to_the_worker() {
    let (_server, backend) = redis().await;
    let db = crate::outbox::fixture::OutboxDb::new().await;
    let acme = db.pg.for_tenant("acme").unwrap();
    let unit = acme.begin().await.unwrap();
    unit.enqueue(&Task::new(1)).unwrap();
    unit.publish(&Noted { n: 1 }).unwrap();
    unit.commit().await.unwrap();
    let unit = db.pg.begin().await.unwrap();
    unit.enqueue(&Task::new(2)).unwrap();
    unit.publish(&Noted { n: 2 }).unwrap();
    unit.commit().await.unwrap();
    let numeric = db.pg.for_tenant(42_i64).unwrap();
    let unit = numeric.begin().await.unwrap();
    unit.enqueue(&Task::new(3)).unwrap();
    unit.commit().await.unwrap();
    let tenant = |t: &str| Some(t.to_owned());
    assert_eq!(
        tenant_column(&db.pg).await,
        [tenant("acme"), tenant("acme"), None, None, tenant("42")]
    );

    let events = relay_all(&db.pg, &backend).await;
    assert_eq!(events, BTreeMap::from([(1, tenant("acme")), (2, None)]));
    let queue = Queue::<Task>::new(&backend).unwrap();
    let seen = run_all(&queue, 3).await;
    assert_eq!(
        seen,
        BTreeMap::from([(1, tenant("acme")), (2, None), (3, tenant("42"))])
    );
    db.cleanup().await;
}

/// An outbox table created before the tenant column: a unit of no tenant
/// still writes to it, and a tenant's unit fails its commit with a
/// configuration error naming the column, writing nothing.
#[tokio::test]
async fn an_outbox_table_without_the_tenant_column_names_the_migration() {
    let db = crate::outbox::fixture::OutboxDb::new().await;
    reposmith::postgres::sqlx::query("ALTER TABLE reposmith_outbox DROP COLUMN tenant")
        .execute(db.pg.pool())
        .await
        .unwrap();
    let unit = db.pg.begin().await.unwrap();
    unit.enqueue(&Task::new(1)).unwrap();
    unit.commit().await.unwrap();
    let unit = db.pg.for_tenant("acme").unwrap().begin().await.unwrap();
    unit.enqueue(&Task::new(2)).unwrap();
    let error = unit.commit().await.unwrap_err();
    assert!(
        matches!(&error, reposmith::Error::Config { reason, .. }
            if reason.contains("reposmith_outbox.tenant")),
        "{error}"
    );
    let rows: i64 =
        reposmith::postgres::sqlx::query_scalar("SELECT count(*) FROM reposmith_outbox")
            .fetch_one(db.pg.pool())
            .await
            .unwrap();
    assert_eq!(rows, 1);
    db.cleanup().await;
}
