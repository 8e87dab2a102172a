//! Concurrent writers on one key: upserts converge to one row, optimistic
//! locking lets exactly one updater win per version.

use reposmith::{Error, Filter, Repository};

use super::Fixture;
use super::entities::{Doc, Setting};

/// On a table whose only unique index is the id. (With a second unique index,
/// Postgres' ON CONFLICT arbitrates only the id: racing speculative inserts
/// can then fail on the other index, which surfaces as a typed `Conflict`.)
pub async fn fifty_concurrent_upserts_of_one_key_leave_one_row<F: Fixture>(fx: &F) {
    let repo = fx.settings();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let repo = repo.clone();
            let setting = Setting {
                key: "shared".into(),
                value: format!("v{i}"),
            };
            tokio::spawn(async move { repo.upsert(&setting).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 1);
}

/// Twenty updates of version 1 at once: one succeeds with version 2, the
/// others get `StaleVersion`.
pub async fn twenty_concurrent_updaters_have_one_winner_per_version<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let doc = repo.insert(&Doc::new("contended")).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (repo, mut doc) = (repo.clone(), doc.clone());
            doc.rank = Some(i);
            tokio::spawn(async move { repo.update(&doc).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(updated) => {
                winners += 1;
                assert_eq!(updated.version, 2);
            }
            Err(Error::StaleVersion { expected: 1, .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(repo.count(Doc::VERSION.eq(2)).await.unwrap(), 1);
}
