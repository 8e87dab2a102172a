//! Migrations of soft-deleting entities: generate → apply → no drift with a
//! partial unique index, on PostgreSQL and MongoDB; an entity gaining
//! `#[repo(soft_delete)]` gets its column and its unique indexes replaced
//! by partial ones (and the revert restores them); `check` reports a full
//! index where a partial one is wanted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reposmith::prelude::*;
use reposmith::{MongoBackend, MongoConfig};
use reposmith_migrate::mongo::{self, apply_mongo, drift_mongo, generate_mongo};
use reposmith_migrate::{Options, Schemas};
use reposmith_tests::{mongodb_url, unique_name};

use super::db::{MigrateDb, read};

/// `soft_items` before soft delete.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "soft_items")]
pub(crate) struct SoftItem {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(unique)]
    pub(crate) slug: String,
    #[repo(index)]
    pub(crate) owner: i64,
}

/// `soft_items` gaining soft delete.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "soft_items")]
pub(crate) struct SoftItemV2 {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(unique)]
    pub(crate) slug: String,
    #[repo(index)]
    pub(crate) owner: i64,
    #[repo(soft_delete)]
    pub(crate) deleted_at: Option<DateTime<Utc>>,
}

#[tokio::test]
async fn gaining_soft_delete_makes_unique_indexes_partial_and_reverts() {
    let db = MigrateDb::new().await;
    let v1 = Schemas::new().add::<SoftItem>();
    let v2 = Schemas::new().add::<SoftItemV2>();
    db.generate(&v1, "items", Options::default());
    db.apply().await;
    assert_eq!(db.drift(&v1).await, Vec::<String>::new());
    let before = db.catalog().await;
    let drift = db.drift(&v2).await;
    assert!(
        drift.iter().any(|d| d.contains("soft_items_slug_key")
            && d.contains("the entity wants UNIQUE btree (slug) WHERE deleted_at IS NULL")),
        "check reports the full index: {drift:?}"
    );
    let files = db.generate(&v2, "soft delete", Options::default());
    let up = read(&files[0]);
    for expected in [
        "ADD COLUMN \"deleted_at\" timestamptz",
        "DROP INDEX IF EXISTS \"soft_items_slug_key\"",
        "CREATE UNIQUE INDEX IF NOT EXISTS \"soft_items_slug_key\" ON \"soft_items\" USING btree (\"slug\") WHERE \"deleted_at\" IS NULL",
    ] {
        assert!(up.contains(expected), "missing {expected} in\n{up}");
    }
    assert!(
        !up.contains("DROP INDEX IF EXISTS \"soft_items_owner_idx\""),
        "non-unique indexes stay: {up}"
    );
    assert_eq!(db.apply().await, vec![2]);
    assert_eq!(db.drift(&v2).await, Vec::<String>::new());
    // A deleted row's key is free again in the migrated table.
    db.exec("INSERT INTO soft_items (slug, owner, deleted_at) VALUES ('k', 1, now())")
        .await;
    db.exec("INSERT INTO soft_items (slug, owner) VALUES ('k', 1)")
        .await;
    db.exec("DELETE FROM soft_items").await;
    reposmith_migrate::revert(&db.dir, &db.db, None)
        .await
        .unwrap();
    assert_eq!(db.catalog().await, before);
    assert_eq!(db.drift(&v1).await, Vec::<String>::new());
    db.cleanup().await;
}

/// `soft_notes` before soft delete, on MongoDB.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "soft_notes")]
pub(crate) struct MongoNote {
    #[repo(id)]
    pub(crate) id: uuid::Uuid,
    #[repo(unique)]
    pub(crate) slug: String,
}

/// `soft_notes` gaining soft delete.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "soft_notes")]
pub(crate) struct MongoNoteV2 {
    #[repo(id)]
    pub(crate) id: uuid::Uuid,
    #[repo(unique)]
    pub(crate) slug: String,
    #[repo(soft_delete)]
    pub(crate) deleted_at: Option<DateTime<Utc>>,
}

#[tokio::test]
async fn mongo_gaining_soft_delete_replaces_unique_indexes_with_partial_ones() {
    let name = unique_name("mongosoft");
    let config = MongoConfig::new(mongodb_url()).database(name.clone());
    let backend = MongoBackend::connect(&config).await.unwrap();
    let root = std::env::temp_dir().join(&name);
    let db = backend.database();
    let wait = Duration::from_secs(10);
    let v1 = Schemas::new().add_mongo::<MongoNote>();
    let v2 = Schemas::new().add_mongo::<MongoNoteV2>();
    generate_mongo(&v1, &root, "notes", false).unwrap().unwrap();
    apply_mongo(&mongo::dir(&root), db, wait).await.unwrap();
    assert_eq!(
        drift_mongo(db, &v1.mongo_snapshot()).await.unwrap(),
        Vec::<String>::new()
    );
    let drift = drift_mongo(db, &v2.mongo_snapshot()).await.unwrap();
    assert!(
        drift.iter().any(|d| d.contains("soft_notes_slug_key")),
        "{drift:?}"
    );
    let file = generate_mongo(&v2, &root, "soft", false).unwrap().unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains("partialFilterExpression"), "{text}");
    apply_mongo(&mongo::dir(&root), db, wait).await.unwrap();
    assert_eq!(
        drift_mongo(db, &v2.mongo_snapshot()).await.unwrap(),
        Vec::<String>::new()
    );
    // The migrated index lets a new document reuse a deleted one's key.
    let notes = backend.repo::<MongoNoteV2>();
    let note = |slug: &str| MongoNoteV2 {
        id: uuid::Uuid::nil(),
        slug: slug.to_owned(),
        deleted_at: None,
    };
    let first = notes.insert(&note("k")).await.unwrap();
    assert!(notes.delete(&first.id).await.unwrap());
    notes.insert(&note("k")).await.unwrap();
    let twin = notes.insert(&note("k")).await;
    assert!(
        matches!(twin, Err(Error::Conflict { .. })),
        "two live documents still conflict: {twin:?}"
    );
    db.drop().await.unwrap();
    backend.close().await;
    let _ = std::fs::remove_dir_all(&root);
}
