//! The domain, written as plain structs. `#[derive(Repository)]` turns each
//! into a table with typed columns (or, for [`Trace`], a MongoDB collection);
//! nothing here mentions SQL or BSON.

use chrono::{DateTime, Utc};
use reposmith::{DbEnum, ObjectId, Repository, Vector};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a document stands in the ingestion pipeline, stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DbEnum)]
pub enum Status {
    /// Fetched, not yet chunked.
    Fetched,
    /// Chunked and ready for retrieval.
    Indexed,
    /// Removed from retrieval.
    Retired,
}

/// What the crawler learned about a document, kept as JSONB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocMeta {
    /// ISO language code.
    pub lang: String,
    /// Author, when the page names one.
    pub author: Option<String>,
    /// Topic labels.
    pub topics: Vec<String>,
}

/// A source document of the knowledge base. Reads by id, by URL (the
/// unique finder) and queries marked `.cached(ttl)` are served from Redis
/// when it is configured; every committed write invalidates them.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(
    backend = "postgres",
    table = "qs_documents",
    cache(ttl = "5m", negative_ttl = "30s")
)]
pub struct Document {
    /// Generated client-side (uuid v7) on insert.
    #[repo(id)]
    pub id: Uuid,
    /// One row per URL: a unique index and a `find_by_source_url` finder.
    #[repo(unique)]
    pub source_url: String,
    /// Shown in search results.
    pub title: String,
    /// Crawler metadata, filterable by JSON path.
    #[repo(json, index)]
    pub metadata: DocMeta,
    /// Pipeline state.
    #[repo(index)]
    pub status: Status,
    /// Optimistic locking: a concurrent edit is an error, never lost.
    #[repo(version)]
    pub version: i64,
    /// Set by the repository on insert.
    #[repo(created_at)]
    pub created_at: DateTime<Utc>,
    /// Set by the repository on every write.
    #[repo(updated_at)]
    pub updated_at: DateTime<Utc>,
}

/// A retrievable passage of a document.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "postgres", table = "qs_chunks")]
pub struct Chunk {
    /// Assigned by the database.
    #[repo(id)]
    pub id: i64,
    /// The document it belongs to: `find_all_by_document_id`.
    #[repo(index)]
    pub document_id: Uuid,
    /// Position in the document.
    pub ordinal: i32,
    /// The passage: part of the full-text document (a generated `tsvector`
    /// with a GIN index), and the text its embedding is computed from.
    #[repo(full_text)]
    pub body: String,
    /// Filled by the repository's embedder on insert when missing; searched
    /// through an HNSW index by cosine distance.
    #[repo(
        vector(dims = 64, distance = "cosine", index = "hnsw"),
        embed(from = "body")
    )]
    pub embedding: Option<Vector>,
}

impl Chunk {
    /// Passage `ordinal` of `document_id`; its embedding is left to the embedder.
    pub fn new(document_id: Uuid, ordinal: i32, body: &str) -> Self {
        Chunk {
            id: 0,
            document_id,
            ordinal,
            body: body.to_owned(),
            embedding: None,
        }
    }
}

impl Document {
    /// A document as the crawler hands it over; the repository fills in the rest.
    pub fn fetched(url: &str, title: &str, lang: &str, topics: &[&str]) -> Self {
        Document {
            id: Uuid::nil(),
            source_url: url.to_owned(),
            title: title.to_owned(),
            metadata: DocMeta {
                lang: lang.to_owned(),
                author: None,
                topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            },
            status: Status::Fetched,
            version: 0,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }
}

/// Token counts and latency of one LLM call, a sub-document in MongoDB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: i64,
    /// Tokens in the answer.
    pub completion_tokens: i64,
    /// Whether the gateway answered from its cache.
    pub cached: bool,
}

/// One LLM call through the gateway, kept in MongoDB only, for 30 days.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "qs_llm_traces")]
pub struct Trace {
    /// Generated on insert, the MongoDB way.
    #[repo(id)]
    pub id: ObjectId,
    /// The gateway's request id: a retried request is refused as a duplicate.
    #[repo(unique)]
    pub request_id: String,
    /// The model called: `find_all_by_model`.
    #[repo(index)]
    pub model: String,
    /// What was asked; its embedding is computed from it.
    pub prompt: String,
    /// Tokens and cache use.
    #[repo(json)]
    pub usage: Usage,
    /// Filled by the embedder on insert; searched exactly server-side, or
    /// with `$vectorSearch` where the server has it.
    #[repo(vector(dims = 64, distance = "cosine"), embed(from = "prompt"))]
    pub embedding: Option<Vector>,
    /// Set on insert; a TTL index drops the trace 30 days later.
    #[repo(created_at, ttl = "30d")]
    pub created_at: DateTime<Utc>,
}

impl Trace {
    /// A trace as the gateway records it; the repository fills in the rest.
    pub fn new(request_id: &str, model: &str, prompt: &str, tokens: (i64, i64)) -> Self {
        Trace {
            id: ObjectId::ZERO,
            request_id: request_id.to_owned(),
            model: model.to_owned(),
            prompt: prompt.to_owned(),
            usage: Usage {
                prompt_tokens: tokens.0,
                completion_tokens: tokens.1,
                cached: tokens.1 == 0,
            },
            embedding: None,
            created_at: DateTime::<Utc>::MIN_UTC,
        }
    }
}

/// Everything the quickstart migrates: its tables and the outbox's. The
/// migrate binary and the test that keeps `migrations/quickstart` current
/// share this list.
pub fn schemas() -> reposmith::migrate::Schemas {
    reposmith::migrate::Schemas::new()
        .add::<Document>()
        .add::<Chunk>()
        .with_outbox()
}
