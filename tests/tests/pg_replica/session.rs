//! Read-your-writes: a session's reads wait for its commits on the replica,
//! and go to the primary when the wait passes its deadline.

use std::time::{Duration, Instant};

use reposmith::postgres::Session;
use reposmith_core::Repository;
use reposmith_tests::conformance::entities::Doc;

use super::db::{ReplicaDb, Servers, pause_replay, resume_replay};

/// With replay paused, a read in the session waits the whole deadline and
/// then answers from the primary; with replay resumed it answers from the
/// replica, without waiting the deadline.
#[tokio::test]
async fn a_session_read_waits_for_its_write_then_falls_back_at_the_deadline() {
    let deadline = Duration::from_millis(400);
    let Some(db) = ReplicaDb::new(|r| r.read_your_writes_timeout(deadline)).await else {
        return;
    };
    let session = Session::new();
    let docs = db.pg.repo::<Doc>().in_session(&session);
    pause_replay().await;
    let doc = docs.insert(&Doc::new("mine")).await.unwrap();
    assert!(
        session.position().is_some(),
        "the insert recorded its commit"
    );

    let (servers, _guard) = Servers::record();
    let started = Instant::now();
    assert_eq!(docs.get(&doc.id).await.unwrap(), Some(doc.clone()));
    let waited = started.elapsed();
    assert!(waited >= deadline, "answered after {waited:?}");
    assert!(waited < deadline + Duration::from_secs(2), "{waited:?}");
    let seen = servers.take();
    assert!(
        seen.contains(&("reposmith.server".into(), "primary".into())),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(f, v)| f == "reposmith.fallback" && v.contains("deadline"))
    );

    // A read outside the session does not wait: it sees the frozen replica.
    let started = Instant::now();
    assert_eq!(db.pg.repo::<Doc>().get(&doc.id).await.unwrap(), None);
    assert!(started.elapsed() < deadline);

    resume_replay().await;
    let resumed = Session::resume(&session.token()).unwrap();
    let later = db.pg.repo::<Doc>().in_session(&resumed);
    let started = Instant::now();
    assert_eq!(later.get(&doc.id).await.unwrap(), Some(doc));
    assert!(started.elapsed() < deadline, "{:?}", started.elapsed());
    // The read outside the session, then the session's read: both on the replica.
    let replica = db.pg.replicas()[0].name.clone();
    assert_eq!(servers.answered(), vec![replica.clone(), replica]);
    db.cleanup().await;
}

/// A unit of work in the session records its commit too.
#[tokio::test]
async fn a_unit_in_a_session_records_its_commit() {
    let Some(db) = ReplicaDb::new(|r| r.read_your_writes_timeout(Duration::from_millis(300))).await
    else {
        return;
    };
    let session = Session::new();
    let before = db.pg.committed_position().await.unwrap();
    pause_replay().await;
    let uow = db.pg.begin().await.unwrap();
    uow.in_session(&session);
    let doc = uow
        .repo::<Doc>()
        .insert(&Doc::new("in a unit"))
        .await
        .unwrap();
    assert_eq!(
        session.position(),
        None,
        "nothing is recorded before COMMIT"
    );
    uow.commit().await.unwrap();
    assert!(session.position().unwrap() > before);
    let docs = db.pg.repo::<Doc>().in_session(&session);
    assert_eq!(
        docs.get(&doc.id).await.unwrap(),
        Some(doc),
        "from the primary"
    );
    db.cleanup().await;
}

/// 1,000 commit-then-read cycles, the session carried as a token between
/// them as a web app would in a cookie: every read sees its write, and the
/// replica serves most of them (the primary only when replay takes longer
/// than the deadline).
#[tokio::test]
async fn a_thousand_commit_then_read_cycles_never_read_stale() {
    let Some(db) = ReplicaDb::new(|r| r.read_your_writes_timeout(Duration::from_secs(2))).await
    else {
        return;
    };
    let (servers, _guard) = Servers::record();
    let mut token = String::new();
    let (mut on_replica, mut stale) = (0, 0);
    for i in 0..1000 {
        let session = Session::resume(&token).unwrap();
        let docs = db.pg.repo::<Doc>().in_session(&session);
        let mut doc = docs.insert(&Doc::new(format!("cycle {i}"))).await.unwrap();
        if i % 2 == 1 {
            doc.rank = Some(i);
            doc = docs.update(&doc).await.unwrap();
        }
        token = session.token();
        let read = db
            .pg
            .repo::<Doc>()
            .in_session(&Session::resume(&token).unwrap());
        if read.get(&doc.id).await.unwrap().as_ref() != Some(&doc) {
            stale += 1;
        }
        on_replica += servers
            .answered()
            .iter()
            .filter(|s| *s != "primary")
            .count();
    }
    let stats = db.pg.read_stats();
    eprintln!(
        "1000 cycles: {on_replica} reads answered by the replica, {stale} stale; {} waited \
         for replay, {} µs in all",
        stats.waits, stats.waited_us
    );
    assert_eq!(stale, 0);
    assert!(
        on_replica >= 500,
        "only {on_replica} of 1000 reads on the replica"
    );
    db.cleanup().await;
}

/// A bulk load in a session records its commits: the session's next read
/// waits for them.
#[tokio::test]
async fn a_bulk_load_in_a_session_records_its_commits() {
    let Some(db) = ReplicaDb::new(|r| r.read_your_writes_timeout(Duration::from_millis(300))).await
    else {
        return;
    };
    let session = Session::new();
    let docs = db.pg.repo::<Doc>().in_session(&session);
    pause_replay().await;
    let rows: Vec<Doc> = (0..10).map(|i| Doc::new(format!("bulk {i}"))).collect();
    docs.bulk_load(&rows).await.unwrap();
    assert!(session.position().is_some(), "bulk_load recorded nothing");
    let count = docs.count(reposmith_core::Filter::all()).await.unwrap();
    assert_eq!(count, 10, "the session read missed its own load");
    db.cleanup().await;
}
