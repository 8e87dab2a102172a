//! `#[derive(Repository)]` on a realistic struct: the schema it emits, the
//! value mapping, the typed columns and the hygiene of the expansion.

#![deny(missing_docs, unused_qualifications)]

use chrono::{DateTime, Utc};
use reposmith::prelude::*;
use reposmith::{ColumnRole, ColumnType, IdStrategy, IndexMethod};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// The expansion must not depend on these names meaning what std says.
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct Vec;

/// Document metadata stored as JSONB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DocMeta {
    /// Language code.
    pub lang: String,
    /// Free-form labels.
    pub labels: std::vec::Vec<String>,
}

/// Publication state.
#[derive(Debug, Clone, Copy, PartialEq, DbEnum)]
pub enum Status {
    /// Not yet visible.
    Draft,
    /// Visible.
    #[repo(rename = "live")]
    Published,
}

/// A retrieved document.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "documents", schema = "public")]
pub struct Document {
    /// Primary key.
    #[repo(id)]
    pub id: Uuid,
    /// Where it came from.
    #[repo(unique)]
    pub source_url: String,
    /// Title.
    #[repo(index)]
    pub title: String,
    /// Optional summary.
    pub summary: std::option::Option<String>,
    /// Labels as a Postgres array.
    pub tags: std::vec::Vec<String>,
    /// Metadata as JSONB.
    #[repo(json, index)]
    pub metadata: DocMeta,
    /// State.
    #[repo(column = "state", default = "'draft'")]
    pub status: Status,
    /// Not stored.
    #[repo(skip)]
    pub score: f64,
    /// Optimistic locking.
    #[repo(version)]
    pub version: i64,
    /// Set on insert.
    #[repo(created_at)]
    pub created_at: DateTime<Utc>,
    /// Set on every write.
    #[repo(updated_at)]
    pub updated_at: DateTime<Utc>,
}

/// An entity with a database-assigned id and the default table name.
#[derive(Debug, Clone, PartialEq, Repository)]
pub struct ChatMessage {
    /// Primary key, assigned by the database.
    #[repo(id)]
    pub id: i64,
    /// Text.
    pub body: String,
}

fn sample() -> Document {
    Document {
        id: Uuid::now_v7(),
        source_url: "https://example.com/a".into(),
        title: "Intro".into(),
        summary: None,
        tags: vec!["x".into()],
        metadata: DocMeta {
            lang: "en".into(),
            labels: vec!["ü".into()],
        },
        status: Status::Published,
        score: 0.0,
        version: 1,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

#[test]
fn schema_describes_the_struct() {
    let schema = Document::SCHEMA;
    assert_eq!(
        (schema.table, schema.schema, schema.entity),
        ("documents", Some("public"), "Document")
    );
    assert_eq!(schema.id_strategy, IdStrategy::ClientUuid);
    let names: std::vec::Vec<&str> = schema.columns.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "id",
            "source_url",
            "title",
            "summary",
            "tags",
            "metadata",
            "state",
            "version",
            "created_at",
            "updated_at"
        ]
    );
    let state = &schema.columns[6];
    assert_eq!(state.ty, ColumnType::Enum(&["draft", "live"]));
    assert_eq!(state.default_sql, Some("'draft'"));
    assert!(schema.columns[3].nullable && !schema.columns[2].nullable);
    assert_eq!(schema.columns[4].ty, ColumnType::Array(&ColumnType::Text));
    assert_eq!(schema.columns[7].role, ColumnRole::Version);
    let indexes: std::vec::Vec<(&str, bool, IndexMethod)> = schema
        .indexes
        .iter()
        .map(|i| (i.name, i.unique, i.method))
        .collect();
    assert_eq!(
        indexes,
        [
            ("documents_source_url_key", true, IndexMethod::BTree),
            ("documents_title_idx", false, IndexMethod::BTree),
            ("documents_metadata_idx", false, IndexMethod::Gin),
        ]
    );
    assert_eq!(ChatMessage::SCHEMA.table, "chat_messages");
    assert_eq!(ChatMessage::SCHEMA.id_strategy, IdStrategy::Identity);
}

#[test]
fn values_round_trip_and_skip_takes_default() {
    let mut doc = sample();
    doc.score = 0.75;
    let values = doc.to_values().unwrap();
    assert_eq!(values.len(), Document::SCHEMA.columns.len());
    assert_eq!(values[6], reposmith::Value::Text("live".into()));
    let back = Document::from_values(values).unwrap();
    assert_eq!(back.score, 0.0, "skipped fields are not stored");
    assert_eq!(
        Document {
            score: 0.75,
            ..back
        },
        doc
    );
}

#[test]
fn typed_columns_build_filters() {
    let filter = Document::TITLE.starts_with("Intro")
        & Document::METADATA.path("lang").eq("en")
        & Document::STATUS.eq(Status::Draft)
        & Document::SUMMARY.is_null();
    let text = format!("{filter:?}");
    assert!(
        text.contains("Like") && text.contains("JsonContains"),
        "{text}"
    );
    let _order = Document::CREATED_AT.desc();
}

#[test]
fn unknown_enum_text_is_a_decode_error_naming_the_field() {
    let mut values = sample().to_values().unwrap();
    values[6] = reposmith::Value::Text("archived".into());
    let err = Document::from_values(values).unwrap_err().to_string();
    assert!(
        err.contains("Document.status") && err.contains("archived"),
        "{err}"
    );
}

/// Numbers an evaluation produced, stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalScores {
    /// Per-question scores.
    pub scores: std::vec::Vec<f64>,
}

/// An LLM evaluation run.
#[derive(Debug, Clone, PartialEq, Repository)]
pub struct EvalRun {
    /// Primary key.
    #[repo(id)]
    pub id: Uuid,
    /// Scores as JSONB.
    #[repo(json)]
    pub result: EvalScores,
}

#[test]
fn nan_in_a_json_field_is_invalid_input_naming_the_field_and_path() {
    let run = EvalRun {
        id: Uuid::nil(),
        result: EvalScores {
            scores: vec![0.5, f64::NAN],
        },
    };
    let err = run.to_values().unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("EvalRun.result") && text.contains(".scores[1]"),
        "{text}"
    );
    let fine = EvalRun {
        id: Uuid::nil(),
        result: EvalScores {
            scores: vec![0.5, 1e300],
        },
    };
    assert!(fine.to_values().is_ok());
}

/// An account whose reads go through the repository cache.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "accounts", cache(ttl = "10m", negative_ttl = "1m"))]
pub struct Account {
    /// Primary key.
    #[repo(id)]
    pub id: Uuid,
    /// Unique, so `find_by_email` reads through the cache.
    #[repo(unique)]
    pub email: String,
}

/// The cached finder compiles under the shadowed `Result`, `Option` and `Vec`.
#[allow(dead_code)]
async fn account_by_email<R: Repository<Account>>(
    repo: &R,
) -> reposmith::Result<std::option::Option<Account>> {
    repo.find_by_email("ada@example.com").await
}

/// `Account` without its cache.
mod uncached {
    use reposmith::Repository;
    use uuid::Uuid;

    /// The same table, not cached.
    #[derive(Debug, Clone, PartialEq, Repository)]
    #[repo(table = "accounts")]
    pub(crate) struct Account {
        /// Primary key.
        #[repo(id)]
        pub(crate) id: Uuid,
        /// Unique.
        #[repo(unique)]
        pub(crate) email: String,
    }
}

#[test]
fn the_cache_is_on_the_schema_and_not_in_the_migration_snapshot() {
    let spec = Account::SCHEMA.cache.expect("Account is cached");
    assert_eq!((spec.ttl_ms, spec.negative_ttl_ms), (600_000, 60_000));
    assert_eq!(uncached::Account::SCHEMA.cache, None);
    // A cache changes how rows are read, never the table: migrations see
    // no difference.
    assert_eq!(
        reposmith_migrate::Snapshot::from_schemas([Account::SCHEMA]),
        reposmith_migrate::Snapshot::from_schemas([uncached::Account::SCHEMA]),
    );
}
