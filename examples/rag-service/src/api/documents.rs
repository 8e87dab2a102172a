//! `POST /v1/documents` (ingest) and `GET /v1/documents/{id}` (status).
//!
//! Ingest writes the document and records its chunking job in one unit of
//! work: both commit or neither does. A text already stored is refused
//! (409) inside that unit, after the job was recorded: the rollback drops
//! the job with the row, so nothing is half-stored and nothing is queued.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use reposmith::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::app::AppState;
use crate::domain::{Chunk, Document, DocumentRepository, DocumentStatus};
use crate::jobs::ChunkDocument;

/// The most bytes of a document's metadata, serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// The longest source, in characters.
pub const MAX_SOURCE_CHARS: usize = 2_000;

/// A document to ingest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// Shown with its passages; 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    pub title: String,
    /// Where it came from (a URL, a file, a collection); 1 to 2,000
    /// characters; searches filter on it.
    #[schema(min_length = 1, max_length = 2000)]
    pub source: String,
    /// The text: not blank, at most `RAG_MAX_DOCUMENT_BYTES` bytes (256
    /// KiB) of UTF-8 (a bound in bytes, which JSON Schema cannot state).
    #[schema(min_length = 1)]
    pub text: String,
    /// Any JSON object, at most 16 KiB serialized (a bound in bytes, which
    /// JSON Schema cannot state), copied to every chunk; searches filter on
    /// it. Default `{}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// The stored document's id and state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    /// The document's id.
    pub id: Uuid,
    /// `received`: its chunking job is queued.
    pub status: String,
}

/// Chunk counts of a document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChunkCounts {
    /// Chunks the text was split into (0 until chunked).
    pub total: u64,
    /// Chunks with an embedding.
    pub embedded: u64,
}

/// A document's ingestion state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentStatusResponse {
    /// The document's id.
    pub id: Uuid,
    /// Its title.
    pub title: String,
    /// Its source.
    pub source: String,
    /// Its metadata.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// `received` (waiting to be chunked), `embedding` (chunked, some
    /// chunks without a vector yet), `ready` (every chunk embedded) or
    /// `failed` (a chunking or embedding job was dead-lettered; see
    /// `failure`).
    pub status: String,
    /// Why the document failed: the dead job's queue, attempts and last
    /// error. Absent unless `status` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Chunk counts.
    pub chunks: ChunkCounts,
    /// When it was ingested.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Ingests a document: stored now, chunked and embedded by the workers.
#[utoipa::path(
    post,
    path = "/v1/documents",
    tag = "documents",
    request_body = IngestRequest,
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Stored; chunking and embedding are queued", body = IngestResponse),
        (status = 400, description = "A missing, blank or malformed field", body = ErrorBody),
        (status = 409, description = "The same text is already stored: `error.document_id` names the stored document", body = ErrorBody),
        (status = 401, description = "No or an unknown x-api-key (when the service has keys)", body = ErrorBody),
        (status = 413, description = "The body is too large, or larger than a limit could ever admit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 429, description = "A limit is spent; see Retry-After", body = ErrorBody),
        (status = 503, description = "A store or the model did not answer in time", body = ErrorBody),
    )
)]
pub async fn ingest(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<IngestRequest>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    let document = checked(&state, request)?;
    let id = document.id;
    let unit = state.store.begin::<Document>().await?;
    // Recorded first: inside a unit the order does not matter, the job
    // and the row commit together or not at all.
    unit.enqueue(&ChunkDocument { document_id: id })?;
    match unit.repo::<Document>().insert(&document).await {
        Ok(_) => unit.commit().await?,
        Err(Error::Conflict {
            field: Some("content_hash"),
            ..
        }) => {
            unit.rollback().await?;
            return Err(duplicate(&state, &document.content_hash).await);
        }
        Err(error) => return Err(error.into()),
    }
    let body = IngestResponse {
        id,
        status: "received".to_owned(),
    };
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// 409 naming the document that holds the same text, in the message and
/// as `error.document_id`.
async fn duplicate(state: &AppState, hash: &str) -> ApiError {
    let existing = match state.store.repo::<Document>() {
        Ok(docs) => docs.find_by_content_hash(hash).await.ok().flatten(),
        Err(_) => None,
    };
    let named = existing
        .as_ref()
        .map_or(String::new(), |d| format!(" as document {}", d.id));
    let error = ApiError::new(
        StatusCode::CONFLICT,
        "duplicate_document",
        format!("the same text is already stored{named}"),
    );
    match existing {
        Some(document) => error.with_document(document.id),
        None => error,
    }
}

/// The request checked field by field, as the document to store.
fn checked(state: &AppState, request: IngestRequest) -> Result<Document, ApiError> {
    let title = bounded_text("title", &request.title, MAX_TITLE_CHARS)?;
    let source = bounded_text("source", &request.source, MAX_SOURCE_CHARS)?;
    let max = state.config.max_document_bytes;
    if request.text.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("text is {} bytes; the limit is {max}", request.text.len()),
        ));
    }
    if request.text.trim().is_empty() {
        return Err(ApiError::invalid("text is blank"));
    }
    if request.text.contains('\0') {
        return Err(ApiError::invalid("text contains a NUL character"));
    }
    let metadata = match request.metadata {
        None | Some(serde_json::Value::Null) => serde_json::json!({}),
        Some(object @ serde_json::Value::Object(_)) => object,
        Some(_) => return Err(ApiError::invalid("metadata must be a JSON object")),
    };
    let size = metadata.to_string().len();
    if size > MAX_METADATA_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}"),
        ));
    }
    let content_hash = Sha256::digest(request.text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Document {
        id: Uuid::now_v7(),
        title,
        source,
        metadata,
        text: request.text,
        content_hash,
        status: DocumentStatus::Received,
        chunks_total: 0,
        failure: None,
        version: 0,
        created_at: chrono::DateTime::UNIX_EPOCH,
        updated_at: chrono::DateTime::UNIX_EPOCH,
    })
}

fn bounded_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars == 0 {
        return Err(ApiError::invalid(format!("{field} is blank")));
    }
    if chars > max {
        return Err(ApiError::invalid(format!(
            "{field} is {chars} characters long; the limit is {max}"
        )));
    }
    if value.contains('\0') {
        return Err(ApiError::invalid(format!(
            "{field} contains a NUL character"
        )));
    }
    Ok(value.to_owned())
}

/// A document's ingestion state.
#[utoipa::path(
    get,
    path = "/v1/documents/{id}",
    tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The document's state: `failed`, with a `failure` reason, once one of its jobs was dead-lettered", body = DocumentStatusResponse),
        (status = 400, description = "Not a uuid", body = ErrorBody),
        (status = 404, description = "No such document", body = ErrorBody),
        (status = 401, description = "No or an unknown x-api-key (when the service has keys)", body = ErrorBody),
        (status = 413, description = "The body is too large, or larger than a limit could ever admit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 429, description = "A limit is spent; see Retry-After", body = ErrorBody),
        (status = 503, description = "A store or the model did not answer in time", body = ErrorBody),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<DocumentStatusResponse>, ApiError> {
    let Path(id) = id.map_err(super::path_error)?;
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::invalid(format!("{id:?} is not a document id (a uuid)")))?;
    let Some(doc) = state.store.repo::<Document>()?.get(&id).await? else {
        return Err(ApiError::not_found(format!("no document {id}")));
    };
    let chunks = state.store.repo::<Chunk>()?;
    let embedded = chunks
        .count(Chunk::DOCUMENT_ID.eq(id) & Chunk::EMBEDDING.is_not_null())
        .await?;
    let total = u64::try_from(doc.chunks_total).unwrap_or(0);
    let status = match doc.status {
        DocumentStatus::Received => "received",
        DocumentStatus::Chunked if embedded < total => "embedding",
        DocumentStatus::Chunked => "ready",
        DocumentStatus::Failed => "failed",
    };
    Ok(Json(DocumentStatusResponse {
        id,
        title: doc.title,
        source: doc.source,
        metadata: doc.metadata,
        status: status.to_owned(),
        failure: doc.failure,
        chunks: ChunkCounts { total, embedded },
        created_at: doc.created_at,
    }))
}
