//! What the service stores, as plain structs: documents and their chunks in
//! PostgreSQL (pgvector, full text, JSONB), conversations and request
//! traces in MongoDB. `src/bin/rag-migrate.rs` generates `migrations/rag` from
//! [`schemas`]; the service applies them when it starts.

use chrono::{DateTime, Utc};
use reposmith::{DbEnum, ObjectId, Repository, Vector};
use serde_json::Value as Json;
use uuid::Uuid;

/// Dimensions of a chunk's embedding: all-MiniLM-L6-v2's 384.
pub const EMBEDDING_DIMS: usize = 384;

/// Where a document stands in the ingestion pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DbEnum)]
pub enum DocumentStatus {
    /// Stored; its chunking job is queued.
    Received,
    /// Split into chunks; their embedding jobs are queued.
    Chunked,
    /// Its chunking job or one of its embedding jobs was dead-lettered
    /// (out of attempts, or unreadable): [`Document::failure`] says why.
    Failed,
}

/// An ingested document. Its text stays here; retrieval reads [`Chunk`]s.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "postgres", table = "rag_documents")]
pub struct Document {
    /// A uuid v7, chosen by the service before the document is written.
    #[repo(id)]
    pub id: Uuid,
    /// Shown with every passage of the document.
    pub title: String,
    /// Where the text came from (a URL, a file, a collection): filterable.
    #[repo(index)]
    pub source: String,
    /// The client's metadata object (JSONB), copied to every chunk.
    #[repo(json)]
    pub metadata: Json,
    /// The whole text, chunked by the chunking job.
    pub text: String,
    /// SHA-256 of the text, hex: the same text is stored once.
    #[repo(unique)]
    pub content_hash: String,
    /// Pipeline state; how many chunks are embedded is counted live.
    #[repo(index)]
    pub status: DocumentStatus,
    /// How many chunks the text was split into (0 until chunked).
    pub chunks_total: i32,
    /// Why the pipeline gave up on it (status `Failed`): the dead job's
    /// queue, attempts and last error.
    pub failure: Option<String>,
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

/// A retrievable passage. Searches go through the repository cache
/// (`cache(..)`): a repeated search is answered from Redis until a chunk
/// is written.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "postgres", table = "rag_chunks", cache(ttl = "10m"))]
pub struct Chunk {
    /// A uuid v7.
    #[repo(id)]
    pub id: Uuid,
    /// The document it was cut from (a foreign key; restrict, as a cached
    /// entity's references must).
    #[repo(references(Document))]
    pub document_id: Uuid,
    /// Position in the document, from 0.
    pub ordinal: i32,
    /// The document's title, copied so a hit needs no join.
    pub title: String,
    /// The document's source, copied for filters and results.
    #[repo(index)]
    pub source: String,
    /// The document's metadata, copied for filters (JSONB, GIN index).
    #[repo(json, index)]
    pub metadata: Json,
    /// The passage: full-text indexed and the text its embedding is made from.
    #[repo(full_text)]
    pub body: String,
    /// Filled by the embedding job; searched through HNSW by cosine distance.
    #[repo(
        vector(dims = 384, distance = "cosine", index = "hnsw"),
        embed(from = "body")
    )]
    pub embedding: Option<Vector>,
}

/// Who wrote a message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DbEnum)]
pub enum Role {
    /// The asking user.
    User,
    /// The service's answer.
    Assistant,
}

/// A conversation of `/v1/ask`, owned by one API key.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "rag_sessions")]
pub struct ChatSession {
    /// Generated on insert; the `session_id` clients send back.
    #[repo(id)]
    pub id: ObjectId,
    /// The API key's name (never the key): only its owner reads it.
    #[repo(index)]
    pub owner: String,
    /// Messages so far; the next message's `turn`.
    pub turns: i32,
    /// Optimistic locking: two questions at once cannot take one turn.
    #[repo(version)]
    pub version: i64,
    /// Set on insert.
    #[repo(created_at)]
    pub created_at: DateTime<Utc>,
    /// Set on every write.
    #[repo(updated_at)]
    pub updated_at: DateTime<Utc>,
}

/// One message of a conversation, with the passages an answer used.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "rag_messages")]
pub struct ChatMessage {
    /// Generated on insert.
    #[repo(id)]
    pub id: ObjectId,
    /// The conversation.
    #[repo(index)]
    pub session_id: ObjectId,
    /// Position in the conversation, from 0.
    pub turn: i32,
    /// User or assistant.
    pub role: Role,
    /// The question or the answer.
    pub text: String,
    /// The chunks retrieved for the answer (empty for a question).
    pub passage_ids: Vec<Uuid>,
    /// Set on insert.
    #[repo(created_at)]
    pub created_at: DateTime<Utc>,
}

/// One HTTP request, kept for a week.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "rag_traces")]
pub struct RequestTrace {
    /// Generated on insert.
    #[repo(id)]
    pub id: ObjectId,
    /// The `x-request-id` the response carried.
    #[repo(unique)]
    pub request_id: String,
    /// HTTP method.
    pub method: String,
    /// The matched route (`/v1/documents/{id}`), or the path when none matched.
    #[repo(index)]
    pub route: String,
    /// Response status.
    pub status: i32,
    /// The API key's name, `anonymous` without keys, empty when refused.
    #[repo(index)]
    pub caller: String,
    /// Request body size.
    pub request_bytes: i64,
    /// Wall time from the first byte read to the response, in milliseconds.
    pub took_ms: f64,
    /// The error code of a failed request.
    pub error: Option<String>,
    /// Set on insert; a TTL index drops the trace 7 days later.
    #[repo(created_at, ttl = "7d")]
    pub created_at: DateTime<Utc>,
}

/// Everything the service migrates: its tables, the outbox's, and its
/// MongoDB collections. The migrate binary and the test keeping
/// `migrations/rag` current share this list.
pub fn schemas() -> reposmith::migrate::Schemas {
    reposmith::migrate::Schemas::new()
        .add::<Document>()
        .add::<Chunk>()
        .with_outbox()
        .add_mongo::<ChatSession>()
        .add_mongo::<ChatMessage>()
        .add_mongo::<RequestTrace>()
}
