//! PostgreSQL under load on a small pool: 64 tasks × 40 mixed operations
//! (200 with `REPOSMITH_HEAVY=1`) on 4 connections, and fairness with one connection held. Every task
//! completes or gets a typed error; afterwards no session is left idle in
//! a transaction and the pool is back within its bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::{Error, PgBackend};
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::{database_url, run_sql, unique_name, with_search_path};

/// Tasks of the load run.
const TASKS: usize = 64;

/// Operations per task: the list's 200 with `REPOSMITH_HEAVY=1`, else 40,
/// which keeps the run in CI to seconds on a shared 2-core machine (200
/// took 49 s there) and still queues 16 tasks per connection.
fn operations() -> usize {
    match reposmith_tests::heavy() {
        true => 200,
        false => 40,
    }
}

async fn backend(namespace: &str, max_connections: u32) -> (PgBackend, PgBackend) {
    let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
        .await
        .unwrap();
    run_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
    let config = reposmith_tests::pg_config(with_search_path(&database_url(), namespace))
        .application_name(namespace.to_owned())
        .max_connections(max_connections);
    let pg = PgBackend::connect(&config).await.unwrap();
    pg.create_tables::<Doc>().await.unwrap();
    (pg, admin)
}

/// This test's sessions, and those idle in a transaction.
async fn sessions(admin: &PgBackend, namespace: &str) -> (i64, i64) {
    let query = "SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%') \
                 FROM pg_stat_activity WHERE application_name = $1";
    sqlx::query_as(query)
        .bind(namespace)
        .fetch_one(admin.pool())
        .await
        .unwrap()
}

/// One operation of the mix, chosen by `n`; `Ok` or an error the caller
/// can act on (a lost optimistic-locking race, a pool timeout).
async fn operation(pg: &PgBackend, task: usize, n: usize) -> Result<(), Error> {
    let docs = pg.repo::<Doc>();
    let title = format!("t{task}-{n}");
    match n % 6 {
        0 | 1 => docs.insert(&Doc::new(title)).await.map(drop),
        2 => docs
            .count(Doc::TITLE.starts_with(format!("t{task}-")))
            .await
            .map(drop),
        3 => {
            let page = docs.find(Filter::all()).limit(5).await?;
            match page.into_iter().next() {
                Some(mut doc) => {
                    doc.rank = Some(n as i32);
                    docs.update(&doc).await.map(drop)
                }
                None => Ok(()),
            }
        }
        4 => {
            let uow = pg.begin().await?;
            uow.repo::<Doc>()
                .insert(&Doc::new(format!("{title}-a")))
                .await?;
            uow.repo::<Doc>()
                .insert(&Doc::new(format!("{title}-b")))
                .await?;
            uow.commit().await
        }
        _ => {
            // A unit dropped uncommitted: rolled back, its connection not reused mid-transaction.
            let uow = pg.begin().await?;
            uow.repo::<Doc>()
                .insert(&Doc::new(format!("{title}-dropped")))
                .await?;
            drop(uow);
            Ok(())
        }
    }
}

/// 64 tasks × 40 (200 heavy) mixed operations (inserts, counts, finds with
/// versioned updates, units committed and units dropped) on a pool of 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_on_a_pool_of_four_finish_typed_and_leave_nothing_open() {
    let namespace = unique_name("pgload");
    let (pg, admin) = backend(&namespace, 4).await;
    let pg = Arc::new(pg);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let pg = Arc::clone(&pg);
            tokio::spawn(async move {
                let mut outcomes = Vec::with_capacity(operations());
                for n in 0..operations() {
                    let began = Instant::now();
                    let outcome = operation(&pg, task, n).await;
                    outcomes.push((began.elapsed(), outcome));
                }
                outcomes
            })
        })
        .collect();
    let (mut latencies, mut stale, mut timeouts, mut other) = (Vec::new(), 0, 0, Vec::new());
    for task in futures_util::future::join_all(tasks).await {
        for (took, outcome) in task.expect("a task panicked") {
            latencies.push(took);
            match outcome {
                Ok(()) => {}
                Err(Error::StaleVersion { .. }) => stale += 1,
                Err(Error::PoolTimeout { .. }) => timeouts += 1,
                Err(error) => other.push(error.to_string()),
            }
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{} operations in {elapsed:.1?} on 4 connections: p50 {:?}, p99 {:?}; {stale} lost \
         optimistic-locking races, {timeouts} pool timeouts, {} other errors",
        latencies.len(),
        at(0.5),
        at(0.99),
        other.len()
    );
    assert!(
        other.is_empty(),
        "untyped failures: {:?}",
        &other[..other.len().min(5)]
    );
    let (open, idle_in_transaction) = sessions(&admin, &namespace).await;
    assert_eq!(idle_in_transaction, 0);
    assert!(open <= 4, "{open} sessions for a pool of 4");
    let dropped: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{namespace}\".docs WHERE title LIKE '%-dropped'"
    )))
    .fetch_one(admin.pool())
    .await
    .unwrap();
    assert_eq!(dropped, 0, "a dropped unit's insert was committed");
    Arc::into_inner(pg).unwrap().close().await;
    run_sql(&admin, &format!("DROP SCHEMA \"{namespace}\" CASCADE")).await;
    admin.close().await;
}

/// One unit holds one of two connections for a while; 50 short reads
/// share the other, none waiting past the acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_connection_does_not_starve_fifty_short_tasks_on_a_pool_of_two() {
    let namespace = unique_name("pgfair");
    let (pg, admin) = backend(&namespace, 2).await;
    let holder = pg.begin().await.unwrap();
    holder
        .repo::<Doc>()
        .insert(&Doc::new("held"))
        .await
        .unwrap();
    let pg = Arc::new(pg);
    let shorts: Vec<_> = (0..50)
        .map(|_| {
            let pg = Arc::clone(&pg);
            tokio::spawn(async move {
                let began = Instant::now();
                pg.repo::<Doc>()
                    .count(Filter::all())
                    .await
                    .map(|_| began.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for short in futures_util::future::join_all(shorts).await {
        slowest = slowest.max(short.unwrap().expect("a short task failed"));
    }
    holder.commit().await.unwrap();
    eprintln!("50 short reads beside a held connection: slowest {slowest:?}");
    assert!(slowest < Duration::from_secs(5), "waited {slowest:?}");
    Arc::into_inner(pg).unwrap().close().await;
    run_sql(&admin, &format!("DROP SCHEMA \"{namespace}\" CASCADE")).await;
    admin.close().await;
}
