//! Migrations of soft-deleting entities: generate → apply → no drift with a
//! partial unique index, on PostgreSQL and MongoDB; an entity gaining
//! `#[repo(soft_delete)]` gets its column and its unique indexes replaced
//! by partial ones (and the revert restores them); `check` reports a full
//! index where a partial one is wanted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reposmith::prelude::*;
use reposmith::{MongoBackend, MongoConfig};
use reposmith_migrate::mongo::{self, apply_mongo, drift_mongo, generate_mongo, revert_mongo};
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

/// `legacy_notes` before soft delete, on MongoDB; its documents are
/// written by the raw driver, as an older application would have.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "legacy_notes")]
pub(crate) struct LegacyNote {
    #[repo(id)]
    pub(crate) id: uuid::Uuid,
    #[repo(unique)]
    pub(crate) slug: String,
    #[repo(vector(dims = 3, distance = "l2"))]
    pub(crate) embedding: Vector,
}

/// `legacy_notes` gaining soft delete.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "legacy_notes")]
pub(crate) struct LegacyNoteV2 {
    #[repo(id)]
    pub(crate) id: uuid::Uuid,
    #[repo(unique)]
    pub(crate) slug: String,
    #[repo(vector(dims = 3, distance = "l2"))]
    pub(crate) embedding: Vector,
    #[repo(soft_delete)]
    pub(crate) deleted_at: Option<DateTime<Utc>>,
}

/// The document an older application stored: no `deleted_at` key.
fn legacy_doc(n: u8, slug: &str) -> reposmith_mongo::mongodb::bson::Document {
    use reposmith_mongo::mongodb::bson::{Binary, doc, spec::BinarySubtype};
    let id = Binary {
        subtype: BinarySubtype::Uuid,
        bytes: legacy_id(n).as_bytes().to_vec(),
    };
    doc! { "_id": id, "slug": slug, "embedding": [f64::from(n), 0.0, 0.0] }
}

fn legacy_id(n: u8) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0191_b0a2_0000_7000_8000_0000_0000_0000 | u128::from(n))
}

/// Every read path of the soft-deleting repository sees the legacy
/// documents (`slugs`, in slug order) as live.
async fn assert_live(notes: &reposmith::MongoRepository<LegacyNoteV2>, slugs: &[&str]) {
    use futures_util::TryStreamExt;
    let names = |found: Vec<LegacyNoteV2>| found.into_iter().map(|n| n.slug).collect::<Vec<_>>();
    let n = slugs.len();
    let got = notes.get(&legacy_id(1)).await.unwrap();
    assert_eq!(got.map(|n| n.deleted_at), Some(None), "get");
    let ids: Vec<_> = (1..=n as u8).map(legacy_id).collect();
    assert_eq!(notes.get_many(&ids).await.unwrap().len(), n, "get_many");
    assert!(
        notes.find_by_slug(slugs[0]).await.unwrap().is_some(),
        "finder"
    );
    let mut found = names(notes.find(Filter::all()).await.unwrap());
    found.sort();
    assert_eq!(found, slugs, "find");
    assert_eq!(notes.count(Filter::all()).await.unwrap(), n as u64, "count");
    assert!(notes.exists(LegacyNoteV2::SLUG.eq(slugs[0])).await.unwrap());
    let query = notes.find(Filter::all()).into_query();
    let streamed: Vec<LegacyNoteV2> = notes.stream(query).try_collect().await.unwrap();
    assert_eq!(streamed.len(), n, "stream");
    let page = notes
        .find(Filter::all())
        .order_by(LegacyNoteV2::SLUG.asc())
        .page_after(None, n as u64)
        .await
        .unwrap();
    assert_eq!(names(page.items), slugs, "keyset page");
    let hits = notes
        .search_embedding(Vector::from(vec![0.0, 0.0, 0.0]), n as u32)
        .await
        .unwrap();
    assert_eq!(hits.len(), n, "vector search");
}

/// Documents stored before their entity soft-deleted lack the key: the
/// migration that introduces it backfills `null` (batched; here batches of
/// two over three documents) before it builds the partial unique index, so
/// the index covers them and refuses a duplicate of one; every read path
/// sees them as live before and after; the step reruns safely.
#[tokio::test]
async fn mongo_soft_delete_backfills_documents_stored_without_the_key() {
    use reposmith_mongo::mongodb::bson::{Document, doc};
    let name = unique_name("mongobackfill");
    let config = MongoConfig::new(mongodb_url()).database(name.clone());
    let backend = MongoBackend::connect(&config).await.unwrap();
    let root = std::env::temp_dir().join(&name);
    let (db, wait, dir) = (
        backend.database(),
        Duration::from_secs(10),
        mongo::dir(&root),
    );
    let v1 = Schemas::new().add_mongo::<LegacyNote>();
    let v2 = Schemas::new().add_mongo::<LegacyNoteV2>();
    generate_mongo(&v1, &root, "notes", false).unwrap().unwrap();
    apply_mongo(&dir, db, wait).await.unwrap();
    let raw = db.collection::<Document>("legacy_notes");
    let docs = [legacy_doc(1, "a"), legacy_doc(2, "b"), legacy_doc(3, "c")];
    raw.insert_many(docs).await.unwrap();
    let notes = backend.repo::<LegacyNoteV2>();
    // The read side already treats a missing key as live (`$eq: null`).
    assert_live(&notes, &["a", "b", "c"]).await;

    let file = generate_mongo(&v2, &root, "soft", false).unwrap().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"backfill\": \"legacy_notes\""), "{text}");
    assert!(
        text.contains("backfill: legacy_notes.deleted_at"),
        "the note: {text}"
    );
    let backfill = text.find("\"backfill\"").unwrap();
    let partial = text.find("partialFilterExpression").unwrap();
    assert!(backfill < partial, "the backfill comes first: {text}");
    std::fs::write(
        &file,
        text.replace("\"batchSize\": 1000", "\"batchSize\": 2"),
    )
    .unwrap();
    assert_eq!(apply_mongo(&dir, db, wait).await.unwrap().versions, [2]);
    let keyed = doc! { "deleted_at": { "$type": "null" } };
    assert_eq!(raw.count_documents(keyed.clone()).await.unwrap(), 3);
    assert_eq!(
        drift_mongo(db, &v2.mongo_snapshot()).await.unwrap(),
        Vec::<String>::new()
    );

    // The partial unique index covers them: a duplicate of one is refused.
    let twin = LegacyNoteV2 {
        id: uuid::Uuid::nil(),
        slug: "b".to_owned(),
        embedding: Vector::from(vec![9.0, 0.0, 0.0]),
        deleted_at: None,
    };
    let refused = notes.insert(&twin).await;
    assert!(
        matches!(refused, Err(Error::Conflict { .. })),
        "{refused:?}"
    );
    assert_live(&notes, &["a", "b", "c"]).await;
    // Deleting one frees its key, as for any soft-deleted document.
    assert!(notes.delete(&legacy_id(2)).await.unwrap());
    notes.insert(&twin).await.unwrap();

    // Rerun: revert (the backfill is not undone), an older writer adds a
    // document without the key, apply again backfills it alone.
    raw.delete_many(doc! { "slug": "b" }).await.unwrap();
    revert_mongo(&dir, db, wait, None).await.unwrap();
    raw.insert_one(legacy_doc(2, "b")).await.unwrap();
    assert_eq!(raw.count_documents(keyed.clone()).await.unwrap(), 2);
    assert_eq!(apply_mongo(&dir, db, wait).await.unwrap().versions, [2]);
    assert_eq!(raw.count_documents(keyed).await.unwrap(), 3);
    assert!(notes.insert(&twin).await.is_err(), "b is covered again");
    assert_live(&notes, &["a", "b", "c"]).await;
    db.drop().await.unwrap();
    backend.close().await;
    let _ = std::fs::remove_dir_all(&root);
}
