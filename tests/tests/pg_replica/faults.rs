//! The replica failing: stopped mid-run, lagging past `max_lag`, and
//! cancelling a read in a recovery conflict.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reposmith::postgres::ReplicaConfig;
use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::{ConnectionUrl, Error};
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::fault_proxy::{FaultProxy, Mode, Wire};
use reposmith_tests::pg_replica::{self, start_replica, stop_replica};
use reposmith_tests::with_host;

use super::db::{ReplicaDb, Servers, pause_replay, resume_replay};

/// Readers keep reading while the replica is stopped and started again:
/// no read fails (they fall back to the primary), and once the probe sees
/// the replica again, reads return to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_mid_run_fails_no_read_and_serves_again_when_back() {
    let Some(db) = ReplicaDb::new(|r| r).await else {
        return;
    };
    let db = Arc::new(db);
    let docs = db.pg.repo::<Doc>();
    let rows: Vec<Doc> = (0..20).map(|i| Doc::new(format!("row {i}"))).collect();
    docs.insert_many(&rows).await.unwrap();
    db.caught_up().await;
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (docs, stop) = (db.pg.repo::<Doc>(), Arc::clone(&stop));
            let (reads, failures) = (Arc::clone(&reads), Arc::clone(&failures));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match docs.count(Filter::all()).await {
                        Ok(20) => reads.fetch_add(1, Ordering::Relaxed),
                        Ok(n) => panic!("counted {n} rows"),
                        Err(error) => {
                            eprintln!("read failed: {error}");
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::spawn_blocking(stop_replica).await.unwrap();
    db.until_serving(false).await;
    let during = reads.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        reads.load(Ordering::Relaxed) > during,
        "reads stopped with the replica"
    );
    tokio::task::spawn_blocking(start_replica).await.unwrap();
    db.until_serving(true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    let (reads, failures) = (
        reads.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    eprintln!("{reads} reads, {failures} failed");
    assert_eq!(failures, 0);
    let (servers, _guard) = Servers::record();
    db.pg.repo::<Doc>().count(Filter::all()).await.unwrap();
    assert_ne!(servers.answered(), vec!["primary".to_owned()]);
    Arc::into_inner(db).unwrap().cleanup().await;
}

/// The lag past which the lag test's replica is skipped.
const MAX_LAG: u64 = 128 * 1024;

/// A replica more than `max_lag` bytes behind is skipped until it catches
/// up: reads meanwhile see every commit (from the primary).
#[tokio::test]
async fn a_replica_lagging_past_max_lag_is_skipped_until_it_catches_up() {
    let Some(db) = ReplicaDb::new(|r| r.max_lag(MAX_LAG)).await else {
        return;
    };
    let docs = db.pg.repo::<Doc>();
    db.until_serving(true).await;
    pause_replay().await;
    let mut bulky: Vec<Doc> = (0..400).map(|i| Doc::new(format!("bulky {i}"))).collect();
    for doc in &mut bulky {
        // Random text: TOAST would compress a repeated one to nothing.
        let noise: Vec<String> = (0..64).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        doc.summary = Some(noise.concat());
    }
    docs.insert_many(&bulky).await.unwrap();
    db.until_serving(false).await;
    let lag = db.pg.replicas()[0].lag_bytes;
    assert!(lag > MAX_LAG, "lag {lag}");
    let (servers, _guard) = Servers::record();
    assert_eq!(docs.count(Filter::all()).await.unwrap(), 400);
    assert_eq!(servers.answered(), vec!["primary".to_owned()]);
    resume_replay().await;
    db.until_serving(true).await;
    assert_eq!(docs.count(Filter::all()).await.unwrap(), 400);
    assert_ne!(servers.answered(), vec!["primary".to_owned()]);
    db.cleanup().await;
}

/// Reads on the replica cancelled by a recovery conflict (replay of an
/// ACCESS EXCLUSIVE lock taken on the primary, which waits at most
/// `max_standby_streaming_delay` for the read) run again on the primary:
/// the caller sees no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_conflict_on_the_replica_is_retried_on_the_primary() {
    let Some(db) = ReplicaDb::new(|r| r).await else {
        return;
    };
    let db = Arc::new(db);
    let docs = db.pg.repo::<Doc>();
    let rows: Vec<Doc> = (0..50_000)
        .map(|i| Doc::new(format!("conflict {i}")))
        .collect();
    docs.insert_many(&rows).await.unwrap();
    db.caught_up().await;
    let stop = Arc::new(AtomicBool::new(false));
    let locker = {
        let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
        tokio::spawn(async move {
            let table = format!("\"{}\".docs", db.namespace);
            while !stop.load(Ordering::Relaxed) {
                let lock = format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; COMMIT");
                db.primary_sql(&lock).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (servers, _guard) = Servers::record();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut conflicts, mut reads) = (0, 0);
    while conflicts == 0 && Instant::now() < deadline {
        // A filter no index serves, ten patterns per row: a scan long
        // enough (tens of ms) to outlast the replica's 20 ms grace.
        let n = docs.count(slow_filter()).await;
        assert_eq!(n.expect("a conflict must not surface"), 11_111);
        reads += 1;
        conflicts += servers
            .take()
            .iter()
            .filter(|(f, v)| f == "reposmith.fallback" && v.contains("recovery conflict"))
            .count();
    }
    stop.store(true, Ordering::Relaxed);
    locker.await.unwrap();
    eprintln!("{reads} reads, {conflicts} retried after a recovery conflict");
    assert!(conflicts > 0, "no recovery conflict in {reads} reads");
    Arc::into_inner(db).unwrap().cleanup().await;
}

/// Matches "conflict 4…" only, after trying nine patterns no row has.
fn slow_filter() -> Filter<Doc> {
    (0..9).fold(Doc::TITLE.ilike("%conflict 4%"), |filter, i| {
        filter.or(Doc::TITLE.ilike(format!("%nothing {i}%")))
    })
}

/// A statement timeout on the replica is the query's own: returned as
/// `Timeout`, not retried on the primary, and the replica stays up. The
/// replica's read waits on a lock replayed from the primary, which holds
/// it in an open transaction.
#[tokio::test]
async fn a_statement_timeout_on_the_replica_is_returned_and_keeps_it_up() {
    let Some(db) = ReplicaDb::with_statement_timeout(Duration::from_millis(300), |r| r).await
    else {
        return;
    };
    let docs = db.pg.repo::<Doc>();
    docs.insert(&Doc::new("locked")).await.unwrap();
    db.caught_up().await;
    let mut locker = db.primary_connection().await;
    let lock = format!(
        "BEGIN; LOCK TABLE \"{}\".docs IN ACCESS EXCLUSIVE MODE",
        db.namespace
    );
    sqlx::raw_sql(AssertSqlSafe(lock))
        .execute(&mut locker)
        .await
        .unwrap();
    // Another commit flushes the lock's WAL record to the replica.
    db.primary_sql("SELECT txid_current()").await;
    db.caught_up().await;
    let started = Instant::now();
    let outcome = docs.count(Filter::all()).await;
    let took = started.elapsed();
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    assert!(
        took < Duration::from_millis(900),
        "retried elsewhere: {took:?}"
    );
    assert!(db.pg.replicas()[0].up, "{:?}", db.pg.replicas());
    db.cleanup().await;
}

/// A replica that stops answering (its packets held, sockets open) costs a
/// read `statement_timeout` + 1 s, then the read runs on the primary and
/// succeeds; the replica is marked down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_read_falls_back_to_the_primary() {
    let Some(url) = pg_replica::required(pg_replica::REPLICA_URL) else {
        return;
    };
    let upstream = url
        .split_once('@')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let proxy = FaultProxy::start(upstream, Wire::Bytes).await;
    let proxied = with_host(&url, &proxy.host_port());
    let tune = |mut r: ReplicaConfig| {
        let namespace_url = r.urls[0].expose().replace(&url, &proxied);
        r.urls = vec![ConnectionUrl::new(namespace_url)];
        r.probe_interval(Duration::from_secs(30))
    };
    let Some(db) = ReplicaDb::with_statement_timeout(Duration::from_millis(300), tune).await else {
        return;
    };
    let docs = db.pg.repo::<Doc>();
    docs.insert(&Doc::new("x")).await.unwrap();
    db.caught_up().await;
    assert_eq!(docs.count(Filter::all()).await.unwrap(), 1);
    assert_eq!(db.pg.read_stats().replicas, 1);
    proxy.set_mode(Mode::Stall);
    let started = Instant::now();
    let outcome = docs.count(Filter::all()).await;
    let took = started.elapsed();
    proxy.set_mode(Mode::Pass);
    assert_eq!(outcome.unwrap(), 1);
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(!db.pg.replicas()[0].up);
    db.cleanup().await;
}
