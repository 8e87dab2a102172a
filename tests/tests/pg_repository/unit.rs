//! Units of work: commit, rollback on error, drop and panic, savepoints,
//! and no connection left idle in a transaction.

use reposmith_core::{Filter, Repository};
use reposmith_postgres::IsolationLevel;
use reposmith_tests::conformance::entities::{Doc, Setting};

use super::db::Db;

fn setting(key: &str) -> Setting {
    Setting {
        key: key.into(),
        value: "v".into(),
    }
}

/// Backends of this pool's application that sit idle inside a transaction,
/// after giving the server up to two seconds to notice discarded connections
/// (a closed socket is seen when the backend next reads, not instantly).
async fn idle_in_transaction(db: &Db) -> i64 {
    let sql = "SELECT count(*) FROM pg_stat_activity \
               WHERE state LIKE 'idle in transaction%' AND application_name = $1 \
               AND pid <> pg_backend_pid()";
    let mut count = 0;
    for _ in 0..100 {
        count = reposmith::postgres::sqlx::query_scalar(sql)
            .bind(db.application_name())
            .fetch_one(db.pg.pool())
            .await
            .unwrap();
        if count == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    count
}

#[tokio::test]
async fn commit_makes_writes_visible_and_rollback_discards_them() {
    // Two connections at once: reads on the pool while a unit is open.
    let db = Db::with_connections(10).await;
    let unit = db
        .pg
        .begin_with(IsolationLevel::Serializable)
        .await
        .unwrap();
    unit.repo::<Setting>().insert(&setting("a")).await.unwrap();
    unit.repo::<Doc>()
        .insert(&Doc::new("in unit"))
        .await
        .unwrap();
    assert_eq!(
        db.pg.repo::<Setting>().count(Filter::all()).await.unwrap(),
        0,
        "not visible before commit"
    );
    unit.commit().await.unwrap();
    assert_eq!(db.pg.repo::<Doc>().count(Filter::all()).await.unwrap(), 1);

    let unit = db.pg.begin().await.unwrap();
    unit.repo::<Setting>().insert(&setting("b")).await.unwrap();
    unit.rollback().await.unwrap();
    assert!(
        db.pg
            .repo::<Setting>()
            .get(&"b".to_owned())
            .await
            .unwrap()
            .is_none()
    );
    db.cleanup().await;
}

#[tokio::test]
async fn an_error_then_drop_rolls_back_everything() {
    let db = Db::new().await;
    let unit = db.pg.begin().await.unwrap();
    let repo = unit.repo::<Setting>();
    repo.insert(&setting("x")).await.unwrap();
    assert!(repo.insert(&setting("x")).await.is_err());
    drop(unit);
    assert!(
        repo.get(&"x".to_owned()).await.is_err(),
        "the unit has ended"
    );
    assert_eq!(
        db.pg.repo::<Setting>().count(Filter::all()).await.unwrap(),
        0
    );
    db.cleanup().await;
}

#[tokio::test]
async fn nested_units_are_savepoints() {
    let db = Db::new().await;
    let unit = db.pg.begin().await.unwrap();
    unit.repo::<Setting>()
        .insert(&setting("outer"))
        .await
        .unwrap();
    let inner = unit.nested().await.unwrap();
    inner
        .repo::<Setting>()
        .insert(&setting("rolled back"))
        .await
        .unwrap();
    inner.rollback().await.unwrap();
    let kept = unit.nested().await.unwrap();
    kept.repo::<Setting>()
        .insert(&setting("kept"))
        .await
        .unwrap();
    kept.commit().await.unwrap();
    let dropped = unit.nested().await.unwrap();
    dropped
        .repo::<Setting>()
        .insert(&setting("dropped"))
        .await
        .unwrap();
    drop(dropped);
    unit.commit().await.unwrap();
    let mut keys: Vec<String> = db
        .pg
        .repo::<Setting>()
        .fetch(reposmith_core::FindQuery::new(Filter::all()))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["kept", "outer"]);
    db.cleanup().await;
}

#[tokio::test]
async fn with_one_connection_a_dropped_or_panicking_unit_leaves_it_usable() {
    let db = Db::with_pool(1).await;
    for round in 0..3 {
        let unit = db.pg.begin().await.unwrap();
        unit.repo::<Setting>()
            .insert(&setting(&format!("drop{round}")))
            .await
            .unwrap();
        drop(unit);
        assert_eq!(idle_in_transaction(&db).await, 0);
    }
    let pg = db.pg.clone();
    let panicked = tokio::spawn(async move {
        let unit = pg.begin().await.unwrap();
        unit.repo::<Setting>()
            .insert(&setting("panic"))
            .await
            .unwrap();
        panic!("while the unit is open");
    })
    .await;
    assert!(panicked.is_err());
    // Cancelled mid-operation: the future is dropped at whatever await point it reached.
    let pg = db.pg.clone();
    let slow = async move {
        let unit = pg.begin().await.unwrap();
        unit.repo::<Setting>()
            .insert(&setting("cancelled"))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        unit.commit().await
    };
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), slow)
            .await
            .is_err()
    );
    assert_eq!(
        db.pg.repo::<Setting>().count(Filter::all()).await.unwrap(),
        0
    );
    assert_eq!(idle_in_transaction(&db).await, 0);
    db.cleanup().await;
}

/// Eight read-modify-write units on one counter at SERIALIZABLE: the losers
/// are aborted with 40001 and rerun by `transaction`, so no increment is lost.
#[tokio::test]
async fn transaction_reruns_serialization_failures_until_every_increment_lands() {
    // Two connections at once: eight units race.
    let db = Db::with_connections(10).await;
    let counter = db.pg.repo::<Setting>();
    let key = "counter".to_owned();
    let seed = Setting {
        key: key.clone(),
        value: "0".into(),
    };
    counter.insert(&seed).await.unwrap();
    let policy = reposmith_core::RetryPolicy::default().max_attempts(50);
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    // Every first attempt reads before any writes, so all but one must conflict.
    let all_read = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let tasks = (0..8).map(|_| {
        let (pg, key, attempts) = (db.pg.clone(), key.clone(), attempts.clone());
        let all_read = all_read.clone();
        tokio::spawn(async move {
            let mut first = true;
            pg.transaction(policy, |uow| {
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (key, all_read) = (key.clone(), all_read.clone());
                let wait = std::mem::take(&mut first);
                Box::pin(async move {
                    let repo = uow.repo::<Setting>();
                    let mut row = repo.get(&key).await?.expect("seeded");
                    if wait {
                        all_read.wait().await;
                    }
                    let n: i64 = row.value.parse().expect("a number");
                    row.value = (n + 1).to_string();
                    repo.update(&row).await?;
                    Ok(())
                })
            })
            .await
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.unwrap().expect("every unit commits eventually");
    }
    let total = counter.get(&key).await.unwrap().unwrap().value;
    assert_eq!(total, "8", "no increment lost");
    let runs = attempts.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        runs >= 15,
        "the 7 units that lost the first race ran again, {runs} runs"
    );
    db.cleanup().await;
}

/// Errors other than serialization failures and deadlocks end the unit at once.
#[tokio::test]
async fn transaction_does_not_rerun_other_errors() {
    let db = Db::new().await;
    let seed = Setting {
        key: "dup".into(),
        value: "x".into(),
    };
    db.pg.repo::<Setting>().insert(&seed).await.unwrap();
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = runs.clone();
    let result: reposmith_core::Result<()> = db
        .pg
        .transaction(reposmith_core::RetryPolicy::default(), |uow| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let seed = seed.clone();
            Box::pin(async move {
                uow.repo::<Setting>().insert(&seed).await?;
                Ok(())
            })
        })
        .await;
    assert!(
        matches!(result, Err(reposmith::Error::Conflict { .. })),
        "{result:?}"
    );
    assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(idle_in_transaction(&db).await, 0);
    db.cleanup().await;
}

/// A failed statement aborts a Postgres transaction; COMMIT would then answer
/// with a silent ROLLBACK. The unit must say so instead of reporting success.
#[tokio::test]
async fn commit_after_a_caught_error_reports_the_rollback() {
    let db = Db::new().await;
    db.pg
        .repo::<Setting>()
        .insert(&setting("taken"))
        .await
        .unwrap();
    let unit = db.pg.begin().await.unwrap();
    unit.repo::<Setting>()
        .insert(&setting("before"))
        .await
        .unwrap();
    let conflict = unit.repo::<Setting>().insert(&setting("taken")).await;
    assert!(
        matches!(conflict, Err(reposmith::Error::Conflict { .. })),
        "{conflict:?}"
    );
    let err = unit.commit().await.unwrap_err();
    assert!(
        matches!(&err, reposmith::Error::Backend { code: Some(code), .. } if code == "25P02"),
        "{err:?}"
    );
    let stored = db.pg.repo::<Setting>().count(Filter::all()).await.unwrap();
    assert_eq!(stored, 1, "only the row written before the unit");
    assert_eq!(idle_in_transaction(&db).await, 0);
    db.cleanup().await;
}

/// A statement cancelled inside a unit may have reached the server: the
/// unit must not then commit it as if the caller had seen it succeed.
#[tokio::test]
async fn a_statement_cancelled_inside_a_unit_is_never_committed_silently() {
    let db = Db::new().await;
    for round in 0..5 {
        let unit = db.pg.begin().await.unwrap();
        let key = format!("cut{round}");
        let repo = unit.repo::<Setting>();
        let cut =
            tokio::time::timeout(std::time::Duration::ZERO, repo.insert(&setting(&key))).await;
        let committed = unit.commit().await;
        let stored = db.pg.repo::<Setting>().get(&key).await.unwrap().is_some();
        match cut {
            Err(_elapsed) => {
                assert!(
                    committed.is_err(),
                    "a unit with a cancelled statement committed"
                );
                assert!(!stored);
            }
            Ok(inserted) => {
                inserted.unwrap();
                committed.unwrap();
                assert!(stored);
            }
        }
    }
    assert_eq!(idle_in_transaction(&db).await, 0);
    db.cleanup().await;
}

/// Nested units are savepoints on a stack: while one is open, the outer
/// unit's repositories are refused (their writes would land inside the
/// nested savepoint and vanish with its rollback); a nested rollback also
/// recovers the unit from a failed statement.
#[tokio::test]
async fn sibling_nested_units_are_independent_and_recover_from_errors() {
    // Two connections at once: a second unit opens while one is open.
    let db = Db::with_connections(10).await;
    db.pg
        .repo::<Setting>()
        .insert(&setting("taken"))
        .await
        .unwrap();
    let parent = db.pg.begin().await.unwrap();
    let kept = parent.nested().await.unwrap();
    kept.repo::<Setting>()
        .insert(&setting("kept"))
        .await
        .unwrap();
    kept.commit().await.unwrap();

    let undone = parent.nested().await.unwrap();
    undone
        .repo::<Setting>()
        .insert(&setting("undone"))
        .await
        .unwrap();
    let outer_write = parent.repo::<Setting>().insert(&setting("outer")).await;
    assert!(
        matches!(&outer_write, Err(reposmith::Error::InvalidInput { field, .. }) if field == "nested unit"),
        "{outer_write:?}"
    );
    // The message says what to do: the parent is locked, go through the child.
    let message = outer_write.unwrap_err().to_string();
    assert!(
        message.contains("locked") && message.contains("child.nested()"),
        "{message}"
    );
    let second = parent.nested().await.err();
    assert!(
        matches!(&second, Some(reposmith::Error::InvalidInput { field, .. }) if field == "nested unit"),
        "a second nested unit opens from the first, not from the locked parent: {second:?}"
    );
    let early_commit = db.pg.begin().await.unwrap();
    let open = early_commit.nested().await.unwrap();
    assert!(
        early_commit.commit().await.is_err(),
        "a parent cannot commit over an open nested unit"
    );
    drop(open);
    undone.rollback().await.unwrap();

    let risky = parent.nested().await.unwrap();
    let conflict = risky.repo::<Setting>().insert(&setting("taken")).await;
    assert!(conflict.is_err());
    risky.rollback().await.unwrap();
    parent
        .repo::<Setting>()
        .insert(&setting("after"))
        .await
        .unwrap();
    parent
        .commit()
        .await
        .expect("the savepoint rollback made the unit usable again");

    let mut keys: Vec<String> = db
        .pg
        .repo::<Setting>()
        .find(Filter::all())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["after", "kept", "taken"]);
    assert_eq!(idle_in_transaction(&db).await, 0);
    db.cleanup().await;
}
