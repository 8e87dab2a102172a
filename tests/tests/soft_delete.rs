//! Soft delete (`#[repo(soft_delete)]`) on both backends: every read path
//! skips deleted rows unless the repository is `.with_deleted()`, deletes
//! stamp instead of removing, `restore`, `purge`, `purge_deleted`, partial
//! unique indexes (a deleted row's key can be reused), the cache never
//! serving a deleted row, and, on PostgreSQL, a filtered HNSW search that
//! still returns `k` rows with 30% of the table deleted.
//!
//! The bodies in `paths` are written once against `Repository` and
//! `VectorSearch`; `pg` and `mongo` run them on their backend, one test per
//! path (`soft_delete_tests!`).

use chrono::{DateTime, Utc};
use reposmith::Vector;
use reposmith::prelude::*;
use uuid::Uuid;

mod mongo;
mod paths;
mod pg;
mod pg_recall;
mod review;

/// A soft-deleted entity with every feature the read paths touch: a
/// unique field (finder, partial index), an index, full text, a vector,
/// a version and `updated_at`; cached, so the cache paths are exercised
/// when a cache is attached.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "soft_notes", cache(ttl = "5m", negative_ttl = "5m"))]
pub(crate) struct Note {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(unique)]
    pub(crate) slug: String,
    #[repo(index)]
    pub(crate) topic: String,
    #[repo(full_text)]
    pub(crate) body: String,
    #[repo(vector(dims = 3, distance = "l2"))]
    pub(crate) embedding: Vector,
    #[repo(version)]
    pub(crate) version: i64,
    #[repo(updated_at)]
    pub(crate) updated_at: DateTime<Utc>,
    #[repo(soft_delete)]
    pub(crate) deleted_at: Option<DateTime<Utc>>,
}

impl Note {
    /// A live note; the repository assigns id, version and `updated_at`.
    pub(crate) fn new(slug: &str, at: f32) -> Note {
        Note {
            id: Uuid::nil(),
            slug: slug.to_owned(),
            topic: "shared".to_owned(),
            body: format!("penguins waddle on ice {slug}"),
            embedding: Vector::from(vec![at, 0.0, 0.0]),
            version: 0,
            updated_at: DateTime::UNIX_EPOCH,
            deleted_at: None,
        }
    }
}
