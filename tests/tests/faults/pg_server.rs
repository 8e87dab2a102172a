//! The server itself failing, on a PostgreSQL of the test's own
//! (`reposmith_tests::own_postgres`): an immediate restart under a warm
//! pool, five seconds down, and `kill -9` while units commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reposmith::postgres::sqlx;
use reposmith::{Error, PgBackend};
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::own_postgres::OwnPostgres;

async fn backend(server: &OwnPostgres, connections: u32) -> PgBackend {
    let config = reposmith_tests::pg_config(server.url())
        .max_connections(connections)
        .min_connections(connections)
        .connect_timeout(Duration::from_secs(1))
        .acquire_timeout(Duration::from_secs(2));
    let pg = PgBackend::connect(&config).await.unwrap();
    pg.create_tables::<Doc>().await.unwrap();
    pg
}

/// Whether `error` says the server or the connection went away, as a
/// restart or an outage should be reported.
fn server_gone(error: &Error) -> bool {
    matches!(
        error,
        Error::ConnectionLost { .. }
            | Error::Connect { .. }
            | Error::PoolTimeout { .. }
            | Error::Unavailable { .. }
            | Error::CommitOutcomeUnknown { .. }
    )
}

/// `pg_ctl restart -m immediate` under a warm pool of 4: at most one typed
/// error per stale connection, and operations succeed again within 2 s of
/// the server accepting connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_restart_costs_at_most_one_error_per_stale_connection() {
    let Some(server) = OwnPostgres::start() else {
        println!(
            "not run here: the PostgreSQL binaries are not the project's (DATABASE_URL is yours)"
        );
        return;
    };
    let pg = backend(&server, 4).await;
    let docs = pg.repo::<Doc>();
    docs.insert(&Doc::new("before")).await.unwrap();
    let server = Arc::new(server);
    let restarting = Arc::clone(&server);
    tokio::task::spawn_blocking(move || restarting.restart_immediately())
        .await
        .unwrap();
    let back = Instant::now();
    let (mut errors, mut successes) = (Vec::new(), 0);
    while successes < 20 {
        match docs.count(Filter::all()).await {
            Ok(n) => {
                assert_eq!(n, 1, "the committed row survived the restart");
                successes += 1;
            }
            Err(error) => {
                assert!(server_gone(&error), "untyped: {error:?}");
                assert!(back.elapsed() < Duration::from_secs(2), "not back: {error}");
                errors.push(error.to_string());
            }
        }
    }
    eprintln!(
        "immediate restart: {} errors in all, the first success {:?} after the server was back, \
         then 20 operations fine",
        errors.len(),
        back.elapsed()
    );
    assert!(errors.len() <= 4, "{errors:?}");
    pg.close().await;
}

/// The server down for 5 s: each operation meanwhile fails fast (within
/// the connect timeout and a little) with a typed error, and operations
/// succeed again on their own once it is back, without a reconnect call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_seconds_down_fails_fast_and_recovers_alone() {
    let Some(server) = OwnPostgres::start() else {
        println!(
            "not run here: the PostgreSQL binaries are not the project's (DATABASE_URL is yours)"
        );
        return;
    };
    let pg = backend(&server, 2).await;
    let docs = pg.repo::<Doc>();
    docs.insert(&Doc::new("before")).await.unwrap();
    let server = Arc::new(server);
    let stopping = Arc::clone(&server);
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();
    let down = Instant::now();
    let (mut failures, mut slowest) = (0, Duration::ZERO);
    while down.elapsed() < Duration::from_secs(5) {
        let started = Instant::now();
        let error = docs.count(Filter::all()).await.unwrap_err();
        assert!(server_gone(&error), "untyped: {error:?}");
        slowest = slowest.max(started.elapsed());
        failures += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let starting = Arc::clone(&server);
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .unwrap();
    let back = Instant::now();
    let recovered = loop {
        match docs.count(Filter::all()).await {
            Ok(n) => break (n, back.elapsed()),
            Err(error) => {
                assert!(back.elapsed() < Duration::from_secs(2), "not back: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    eprintln!(
        "5 s down: {failures} operations failed, the slowest in {slowest:?}; back after {:?}",
        recovered.1
    );
    assert_eq!(recovered.0, 1);
    assert!(
        slowest < Duration::from_millis(2500),
        "a failure took {slowest:?}"
    );
    pg.close().await;
}

/// What a committing task knows about one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outcome {
    Acknowledged,
    Unknown,
    Failed,
}

/// `kill -9` of the postmaster and its backends while 4 tasks commit
/// two-row units (fsync on): after crash recovery every acknowledged unit
/// is whole, every unit whose COMMIT outcome was unknown is whole or
/// absent, and no unit is half there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_committing_keeps_every_acknowledged_unit_and_no_half_unit() {
    let Some(server) = OwnPostgres::start() else {
        println!(
            "not run here: the PostgreSQL binaries are not the project's (DATABASE_URL is yours)"
        );
        return;
    };
    let pg = Arc::new(backend(&server, 4).await);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let (pg, stop) = (Arc::clone(&pg), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let unit = format!("u{task}-{n}");
                    let outcome = commit_unit(&pg, &unit).await;
                    outcomes.push((unit, outcome));
                    if outcome != Outcome::Acknowledged {
                        break;
                    }
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let server = Arc::new(server);
    let killing = Arc::clone(&server);
    tokio::task::spawn_blocking(move || killing.kill_9())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        outcomes.extend(task.unwrap());
    }
    let starting = Arc::clone(&server);
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .unwrap();
    let rows = rows_per_unit(&server.url()).await;
    let mut tally: HashMap<Outcome, usize> = HashMap::new();
    for (unit, outcome) in &outcomes {
        *tally.entry(*outcome).or_default() += 1;
        let present = rows.get(unit).copied().unwrap_or(0);
        match outcome {
            Outcome::Acknowledged => assert_eq!(present, 2, "acknowledged {unit} lost"),
            Outcome::Unknown => assert!(present == 0 || present == 2, "{unit}: {present} rows"),
            Outcome::Failed => assert_eq!(present, 0, "failed {unit} is there"),
        }
    }
    assert!(rows.values().all(|&n| n == 2), "a half unit: {rows:?}");
    eprintln!(
        "kill -9 mid-commit: {} units acknowledged and all present, {} unknown, {} failed \
         before COMMIT; no half unit",
        tally.get(&Outcome::Acknowledged).unwrap_or(&0),
        tally.get(&Outcome::Unknown).unwrap_or(&0),
        tally.get(&Outcome::Failed).unwrap_or(&0)
    );
    assert!(tally.get(&Outcome::Acknowledged).copied().unwrap_or(0) > 0);
    if let Ok(pg) = Arc::try_unwrap(pg) {
        pg.close().await;
    }
}

/// One two-row unit named `unit`, and what its caller learns.
async fn commit_unit(pg: &PgBackend, unit: &str) -> Outcome {
    let attempt = async {
        let uow = pg.begin().await?;
        let docs = uow.repo::<Doc>();
        docs.insert(&Doc::new(format!("{unit}-a"))).await?;
        docs.insert(&Doc::new(format!("{unit}-b"))).await?;
        uow.commit().await
    };
    match attempt.await {
        Ok(()) => Outcome::Acknowledged,
        Err(Error::CommitOutcomeUnknown { .. }) => Outcome::Unknown,
        Err(error) => {
            assert!(server_gone(&error), "untyped: {error:?}");
            Outcome::Failed
        }
    }
}

/// Rows per unit name, read after recovery on a fresh connection.
async fn rows_per_unit(url: &str) -> HashMap<String, i64> {
    use reposmith::postgres::sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT split_part(title, '-', 1) || '-' || split_part(title, '-', 2), count(*) \
         FROM docs GROUP BY 1",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    rows.into_iter().collect()
}
