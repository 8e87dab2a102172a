//! The entities the conformance suite stores, derived with
//! `#[derive(Repository)]`: together they cover every id strategy, a version,
//! timestamps, JSON, nullable, array and unique fields.

use chrono::{DateTime, Utc};
use reposmith::Repository;
use uuid::Uuid;

/// Uuid id, version, timestamps, JSON, nullable, array and a unique field.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "docs")]
pub struct Doc {
    /// Generated client-side when nil.
    #[repo(id)]
    pub id: Uuid,
    /// Unique.
    #[repo(unique)]
    pub title: String,
    /// Nullable text.
    pub summary: Option<String>,
    /// Nullable number.
    pub rank: Option<i32>,
    /// An array column.
    pub tags: Vec<String>,
    /// A JSON document, indexed.
    #[repo(json, index)]
    pub meta: serde_json::Value,
    /// Optimistic-locking version.
    #[repo(version)]
    pub version: i64,
    /// Set by the repository on insert.
    #[repo(created_at)]
    pub created_at: DateTime<Utc>,
    /// Set by the repository on every write.
    #[repo(updated_at)]
    pub updated_at: DateTime<Utc>,
}

impl Doc {
    /// A new document; the repository assigns id, version and timestamps.
    pub fn new(title: impl Into<String>) -> Self {
        Doc {
            id: Uuid::nil(),
            title: title.into(),
            summary: None,
            rank: None,
            tags: Vec::new(),
            meta: serde_json::json!({}),
            version: 0,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }
}

/// An i64 identity id the database assigns; no arrays, so bulk inserts use UNNEST.
#[derive(Debug, Clone, PartialEq, Repository)]
pub struct Event {
    /// Assigned by the backend on insert; 0 before.
    #[repo(id)]
    pub id: i64,
    /// Unique.
    #[repo(unique)]
    pub name: String,
    /// Nullable number.
    pub score: Option<i32>,
}

/// A String id the application assigns.
#[derive(Debug, Clone, PartialEq, Repository)]
pub struct Setting {
    /// Assigned by the application.
    #[repo(id)]
    pub key: String,
    /// Any text.
    pub value: String,
}
