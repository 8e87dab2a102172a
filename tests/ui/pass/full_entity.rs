// Every attribute together compiles, and the entity works without a database.
use chrono::{DateTime, Utc};
use reposmith::{DbEnum, Entity, Repository};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    lang: String,
}

#[derive(Debug, Clone, Copy, PartialEq, DbEnum)]
enum Status {
    Draft,
    #[repo(rename = "live")]
    Published,
}

#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "docs", schema = "rag")]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(unique, column = "url")]
    source_url: String,
    #[repo(index)]
    title: String,
    summary: Option<String>,
    tags: Vec<String>,
    scores: Vec<f32>,
    #[repo(json, index)]
    meta: Meta,
    #[repo(json)]
    extra: Option<serde_json::Value>,
    raw: serde_json::Value,
    status: Status,
    small: i16,
    medium: i32,
    ratio: f64,
    day: chrono::NaiveDate,
    flag: bool,
    #[repo(default = "0")]
    views: i64,
    #[repo(skip)]
    cached: Option<String>,
    #[repo(version)]
    version: i64,
    #[repo(created_at)]
    created_at: DateTime<Utc>,
    #[repo(updated_at)]
    updated_at: DateTime<Utc>,
}

fn main() {
    assert_eq!(Document::SCHEMA.columns.len(), 19);
    let _ = Document::SOURCE_URL.eq("https://example.com");
    let _ = Document::META.path("lang").eq("en");
}
