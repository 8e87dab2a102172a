//! Review regressions: documents written before an entity gained soft
//! delete (MongoDB, no `deleted_at` key), and `purge_deleted` spans that
//! reach before the earliest timestamp PostgreSQL stores.

use std::time::Duration;

use reposmith::prelude::*;
use reposmith_mongo::mongodb::bson::{Document, doc};

use super::Note;
use super::mongo::MongoSoft;
use super::paths::{SoftFixture, seed};
use super::pg::PgSoft;

/// Ten thousand years: representable by chrono and BSON, before
/// PostgreSQL's earliest `timestamptz` (4713 BC).
const MILLENNIA: Duration = Duration::from_secs(10_000 * 366 * 86_400);

/// A document that predates the soft-delete field has no `deleted_at` key.
/// It reads as live, so `delete` by id must soft-delete it (it matched
/// nothing: the live test was `$type: "null"`, which a missing key fails),
/// and `restore` must leave it alone (it is not deleted).
#[tokio::test]
async fn mongo_documents_without_the_soft_delete_key_are_live_for_delete_and_restore() {
    let fx = MongoSoft::setup().await;
    let notes = fx.notes();
    let old = notes.insert(&Note::new("old", 1.0)).await.unwrap();
    let raw = fx.database().collection::<Document>("soft_notes");
    let unset = raw
        .update_one(
            doc! { "slug": "old" },
            doc! { "$unset": { "deleted_at": "" } },
        )
        .await
        .unwrap();
    assert_eq!(unset.modified_count, 1);
    assert_eq!(
        notes.get(&old.id).await.unwrap().map(|n| n.slug),
        Some("old".to_owned()),
        "a document without the key is live"
    );
    assert!(
        !notes.restore(&old.id).await.unwrap(),
        "a live document is not restored"
    );
    assert!(notes.delete(&old.id).await.unwrap(), "delete finds it");
    assert_eq!(notes.get(&old.id).await.unwrap(), None);
    assert_eq!(notes.count(Filter::all()).await.unwrap(), 0);
    let deleted = notes.with_deleted().get(&old.id).await.unwrap().unwrap();
    assert!(deleted.deleted_at.is_some());
    assert!(notes.restore(&old.id).await.unwrap());
    assert!(notes.get(&old.id).await.unwrap().is_some());
    fx.teardown().await;
}

/// Spans past PostgreSQL's calendar are the typed error the docs promise on
/// both backends, not a server error on one and zero rows on the other.
async fn purge_past_the_calendar<R: Repository<Note>>(repo: &R) {
    let s = seed(repo).await;
    let refused = repo.purge_deleted(MILLENNIA).await;
    assert!(
        matches!(refused, Err(Error::InvalidInput { .. })),
        "{refused:?}"
    );
    assert!(repo.with_deleted().get(&s.b.id).await.unwrap().is_some());
}

#[tokio::test]
async fn pg_purge_deleted_past_the_calendar_is_invalid_input() {
    let fx = PgSoft::setup().await;
    purge_past_the_calendar(&fx.notes()).await;
    fx.teardown().await;
}

#[tokio::test]
async fn mongo_purge_deleted_past_the_calendar_is_invalid_input() {
    let fx = MongoSoft::setup().await;
    purge_past_the_calendar(&fx.notes()).await;
    fx.teardown().await;
}
