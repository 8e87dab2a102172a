//! The replica failing: stopped mid-run, lagging past `max_lag`, and
//! cancelling a read in a recovery conflict.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::pg_replica::{start_replica, stop_replica};

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
        // A filter no index serves: a scan of every row, long enough to conflict.
        let n = docs.count(Doc::TITLE.contains("conflict 4")).await;
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
