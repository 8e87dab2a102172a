//! `POST /v1/search`: vector, full-text or hybrid search over the chunks,
//! with metadata filters and keyset pages.
//!
//! A first page (no cursor) goes through reposmith's search cache
//! (`.cached(ttl)` on the search, `cache(..)` on [`Chunk`]): the hits are
//! kept in Redis under a hash of the rendered search and its values (the
//! query vector included), and any committed chunk write invalidates them,
//! so a repeated search is answered from Redis and never older than the
//! last ingest. Later pages (`page_after(cursor)`) read PostgreSQL. The
//! query's vector comes from the in-process
//! [`QueryVectors`](super::query_vectors::QueryVectors) cache, so a
//! repeated query pays neither the model nor the database.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use reposmith::prelude::*;
use reposmith::{FieldType, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::app::AppState;
use crate::domain::{Chunk, ChunkRepository};

/// How to rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Cosine distance between the query's embedding and the chunks'.
    Vector,
    /// PostgreSQL full-text rank (web-search syntax: quotes, `or`, `-word`).
    Text,
    /// Both, fused by a convex combination of normalised scores (no cursor: raise `k` instead).
    #[default]
    Hybrid,
}

/// A search.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// What to look for: 1 to `RAG_MAX_QUERY_CHARS` characters (1,000),
    /// trimmed, no NUL.
    #[schema(min_length = 1, max_length = 1000)]
    pub query: String,
    /// `vector`, `text` or `hybrid` (the default).
    #[serde(default)]
    pub mode: Mode,
    /// Hits per page, 1 to `RAG_MAX_K` (50); default 10.
    #[serde(default = "default_k")]
    #[schema(minimum = 1, maximum = 50, default = 10)]
    pub k: u32,
    /// Only chunks matching all of its fields (the `Filter` schema);
    /// any other field is refused (`unknown_filter_field`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// The `next_cursor` of the previous page (vector and text modes).
    #[serde(default)]
    pub cursor: Option<String>,
}

fn default_k() -> u32 {
    10
}

/// One hit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Hit {
    /// The chunk.
    pub chunk_id: Uuid,
    /// Its document.
    pub document_id: Uuid,
    /// The document's title.
    pub title: String,
    /// The document's source.
    pub source: String,
    /// The passage.
    pub text: String,
    /// Cosine distance to the query (vector and hybrid modes; smaller is closer).
    pub distance: Option<f64>,
    /// What hits are ordered by: the distance (ascending) in vector mode,
    /// the text rank (descending) in text mode, the fused score
    /// (descending) in hybrid mode.
    pub score: f64,
}

/// A page of hits.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Best first.
    pub results: Vec<Hit>,
    /// Send it back as `cursor` for the next page; `null` on the last page
    /// and in hybrid mode.
    pub next_cursor: Option<String>,
    /// Time spent on the search, in milliseconds.
    pub took_ms: f64,
}

/// Searches the indexed chunks.
#[utoipa::path(
    post,
    path = "/v1/search",
    tag = "search",
    request_body = SearchRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A page of hits", body = SearchResponse),
        (status = 400, description = "An empty or oversized query, an unknown filter field, a bad cursor, malformed JSON", body = ErrorBody),
        (status = 401, description = "No or an unknown x-api-key (when the service has keys)", body = ErrorBody),
        (status = 413, description = "The body is too large, or larger than a limit could ever admit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 429, description = "A limit is spent; see Retry-After", body = ErrorBody),
        (status = 503, description = "A store or the model did not answer in time", body = ErrorBody),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let started = Instant::now();
    let query = check_query(&state, "query", &request.query)?;
    let k = check_k(&state, request.k)?;
    let filter = chunk_filter(request.filter)?;
    let cursor = match request.cursor.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(_) if request.mode == Mode::Hybrid => {
            return Err(ApiError::invalid(
                "hybrid results have no stable order to page through; raise k or use mode vector or text",
            ));
        }
        Some(text) => Some(Cursor::parse(text)),
    };
    let (hits, next) = retrieve(&state, query, request.mode, k, filter, cursor).await?;
    Ok(Json(SearchResponse {
        results: hits.into_iter().map(hit).collect(),
        next_cursor: next.map(|c| c.as_str().to_owned()),
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    }))
}

/// The hits of one page and the cursor of the next.
pub async fn retrieve(
    state: &AppState,
    query: &str,
    mode: Mode,
    k: u32,
    filter: Filter<Chunk>,
    cursor: Option<Cursor>,
) -> Result<(Vec<Scored<Chunk>>, Option<Cursor>), ApiError> {
    let chunks = state.store.repo::<Chunk>()?;
    let ttl = state.config.search_cache_ttl;
    Ok(match (mode, cursor) {
        (Mode::Vector, None) => {
            let vector = embed_query(state, query).await?;
            let search = chunks.search_embedding(vector, k).filter(filter);
            let hits = search.cached(ttl).await?;
            let next = first_page_cursor(&hits, k, Order::Distance);
            (hits, next)
        }
        (Mode::Vector, after) => {
            let vector = embed_query(state, query).await?;
            let search = chunks.search_embedding(vector, k).filter(filter);
            let page = search.page_after(after).await?;
            (page.items, page.next)
        }
        (Mode::Text, None) => {
            let hits = chunks
                .search_text(query, k)
                .filter(filter)
                .cached(ttl)
                .await?;
            let next = first_page_cursor(&hits, k, Order::Rank);
            (hits, next)
        }
        (Mode::Text, after) => {
            let page = chunks
                .search_text(query, k)
                .filter(filter)
                .page_after(after)
                .await?;
            (page.items, page.next)
        }
        (Mode::Hybrid, _) => {
            let vector = embed_query(state, query).await?;
            let search = chunks.search_hybrid(query, vector, k).filter(filter);
            let search = search.fusion(reposmith::search::FusionMethod::Convex);
            (search.cached(ttl).await?, None)
        }
    })
}

/// The query's embedding: from the in-process cache
/// ([`QueryVectors`](super::query_vectors::QueryVectors)), else from the
/// model within the embedding timeout.
async fn embed_query(state: &AppState, query: &str) -> Result<Vector, ApiError> {
    state.queries.embed(query).await
}

/// How a page is ordered, for its cursor.
#[derive(Clone, Copy)]
enum Order {
    Distance,
    Rank,
}

/// The cursor after a first page that came from the cache, which returns
/// hits without one: the same keys `page_after` writes (reposmith's search
/// cursors: `[distance, every id at that distance]` for vector search,
/// `[rank, id]` for text search). A test checks both against the cursor
/// an uncached first page carries.
fn first_page_cursor(hits: &[Scored<Chunk>], k: u32, order: Order) -> Option<Cursor> {
    let last = hits.last().filter(|_| hits.len() as u64 >= u64::from(k))?;
    let mut keys = vec![Value::F64(last.score)];
    match order {
        Order::Distance => keys.extend(
            hits.iter()
                .filter(|h| h.score.to_bits() == last.score.to_bits())
                .map(|h| h.entity.id.to_value()),
        ),
        Order::Rank => keys.push(last.entity.id.to_value()),
    }
    Some(Cursor::encode(&keys))
}

/// A hit as the API shows it.
pub fn hit(scored: Scored<Chunk>) -> Hit {
    let chunk = scored.entity;
    Hit {
        chunk_id: chunk.id,
        document_id: chunk.document_id,
        title: chunk.title,
        source: chunk.source,
        text: chunk.body,
        distance: scored.distance,
        score: scored.score,
    }
}

/// A query or question: trimmed, not empty, at most `max_query_chars`
/// characters, no NUL.
pub fn check_query<'q>(state: &AppState, field: &str, text: &'q str) -> Result<&'q str, ApiError> {
    let text = text.trim();
    let max = state.config.max_query_chars;
    let chars = text.chars().count();
    if chars == 0 {
        return Err(ApiError::invalid(format!("{field} is empty")));
    }
    if chars > max {
        return Err(ApiError::invalid(format!(
            "{field} is {chars} characters long; the limit is {max}"
        )));
    }
    if text.contains('\0') {
        return Err(ApiError::invalid(format!(
            "{field} contains a NUL character"
        )));
    }
    Ok(text)
}

/// `k` between 1 and `max_k`.
pub fn check_k(state: &AppState, k: u32) -> Result<u32, ApiError> {
    let max = state.config.max_k;
    match (1..=max).contains(&k) {
        true => Ok(k),
        false => Err(ApiError::invalid(format!(
            "k must be between 1 and {max}, got {k}"
        ))),
    }
}

/// The most sources one filter lists.
pub const MAX_SOURCES: usize = 100;

/// The filter fields a search accepts.
pub const FILTER_FIELDS: [&str; 3] = ["source", "document_id", "metadata"];

/// The request's filter (of `/v1/search` and `/v1/ask` alike) as a typed
/// reposmith filter (values bound, never spliced into SQL); an unknown
/// field is refused by name (`unknown_filter_field`).
pub fn chunk_filter(filter: Option<serde_json::Value>) -> Result<Filter<Chunk>, ApiError> {
    use serde_json::Value as J;
    let fields = match filter {
        None | Some(J::Null) => return Ok(Filter::all()),
        Some(J::Object(fields)) => fields,
        Some(_) => return Err(ApiError::invalid("filter must be an object")),
    };
    let mut combined = Filter::all();
    for (field, value) in fields {
        combined = combined.and(condition(&field, value)?);
    }
    Ok(combined)
}

/// One field of a filter.
fn condition(field: &str, value: serde_json::Value) -> Result<Filter<Chunk>, ApiError> {
    use serde_json::Value as J;
    match (field, value) {
        ("source", J::String(source)) => Ok(Chunk::SOURCE.eq(no_nul("filter.source", source)?)),
        ("source", J::Array(sources)) => source_list(sources),
        ("document_id", J::String(id)) => match Uuid::parse_str(&id) {
            Ok(id) => Ok(Chunk::DOCUMENT_ID.eq(id)),
            Err(_) => Err(ApiError::invalid("filter.document_id is not a uuid")),
        },
        ("metadata", J::Object(wanted)) => {
            let wanted = J::Object(wanted);
            // PostgreSQL's JSONB holds no NUL character: refused here, by name.
            match has_nul(&wanted) {
                true => Err(ApiError::invalid(
                    "filter.metadata contains a NUL character",
                )),
                false => Ok(Chunk::METADATA.contains(wanted)),
            }
        }
        (known, _) if FILTER_FIELDS.contains(&known) => Err(ApiError::invalid(format!(
            "filter.{known} has the wrong type: source takes a string or a list of \
             strings, document_id a uuid, metadata an object"
        ))),
        (unknown, _) => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "unknown_filter_field",
            format!(
                "unknown filter field {unknown:?}; a filter takes {}",
                FILTER_FIELDS.join(", ")
            ),
        )),
    }
}

/// `filter.source` as a list: at most [`MAX_SOURCES`] strings.
fn source_list(sources: Vec<serde_json::Value>) -> Result<Filter<Chunk>, ApiError> {
    if sources.len() > MAX_SOURCES {
        return Err(ApiError::invalid(format!(
            "filter.source lists {} sources; the limit is {MAX_SOURCES}",
            sources.len()
        )));
    }
    let sources = sources
        .into_iter()
        .map(|s| match s {
            serde_json::Value::String(s) => no_nul("filter.source", s),
            _ => Err(ApiError::invalid("filter.source lists strings only")),
        })
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Chunk::SOURCE.is_in(sources))
}

/// `text` unless it holds a NUL character (which PostgreSQL's text refuses).
fn no_nul(field: &str, text: String) -> Result<String, ApiError> {
    match text.contains('\0') {
        true => Err(ApiError::invalid(format!(
            "{field} contains a NUL character"
        ))),
        false => Ok(text),
    }
}

/// True when a key or a string anywhere in `value` holds a NUL character.
fn has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match value {
        J::String(text) => text.contains('\0'),
        J::Array(items) => items.iter().any(has_nul),
        J::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}
