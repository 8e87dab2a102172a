//! `POST /v1/ask` (an answer from retrieved passages, kept in a
//! conversation) and `GET /v1/sessions/{id}` (the conversation).
//!
//! The question and its answer, with the ids of the passages retrieved,
//! are written to MongoDB in one unit of work with the session's turn
//! counter, so a conversation never holds a question without its answer.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use reposmith::ObjectId;
use reposmith::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::layer::Caller;
use super::search::{Hit, Mode, check_query, chunk_filter, hit, retrieve};
use crate::answer::Passage;
use crate::app::AppState;
use crate::domain::{ChatMessage, ChatSession, Role};

/// The most passages a question retrieves.
pub const MAX_PASSAGES: u32 = 20;
/// The most messages `GET /v1/sessions/{id}` returns (the latest ones).
pub const MAX_MESSAGES: u64 = 1_000;

/// A question.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The conversation to continue (24 hex digits); a new one when absent.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{24}$")]
    pub session_id: Option<String>,
    /// The question: 1 to `RAG_MAX_QUERY_CHARS` characters (1,000),
    /// trimmed, no NUL.
    #[schema(min_length = 1, max_length = 1000)]
    pub question: String,
    /// Passages to retrieve, 1 to 20; default 4.
    #[serde(default = "default_k")]
    #[schema(minimum = 1, maximum = 20, default = 4)]
    pub k: u32,
    /// Only passages matching all of its fields, as in `/v1/search` (the
    /// `Filter` schema); any other field is refused (`unknown_filter_field`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
}

fn default_k() -> u32 {
    4
}

/// An answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AskResponse {
    /// The conversation (send it back to continue it).
    pub session_id: String,
    /// The answer; `[n]` cites passage n.
    pub answer: String,
    /// The passages retrieved, best first.
    pub passages: Vec<Hit>,
}

/// One message of a conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// Position in the conversation, from 0.
    pub turn: i32,
    /// `user` or `assistant`.
    pub role: String,
    /// The question or the answer.
    pub text: String,
    /// The chunks retrieved for an answer.
    pub passage_ids: Vec<Uuid>,
    /// When it was written.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionResponse {
    /// Its id.
    pub session_id: String,
    /// When it started.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Its messages, oldest first.
    pub messages: Vec<MessageView>,
}

/// Answers a question from the indexed documents.
#[utoipa::path(
    post,
    path = "/v1/ask",
    tag = "ask",
    request_body = AskRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The answer and its passages", body = AskResponse),
        (status = 400, description = "An empty or oversized question, a bad session id, an unknown filter field, malformed JSON", body = ErrorBody),
        (status = 404, description = "No such session for this key", body = ErrorBody),
        (status = 409, description = "Another question of the session was answered meanwhile", body = ErrorBody),
        (status = 502, description = "The application's generator failed", body = ErrorBody),
        (status = 401, description = "No or an unknown x-api-key (when the service has keys)", body = ErrorBody),
        (status = 413, description = "The body is too large, or larger than a limit could ever admit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 429, description = "A limit is spent; see Retry-After", body = ErrorBody),
        (status = 503, description = "A store or the model did not answer in time", body = ErrorBody),
    )
)]
pub async fn ask(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(request): JsonBody<AskRequest>,
) -> Result<Json<AskResponse>, ApiError> {
    let question = check_query(&state, "question", &request.question)?;
    let k = match request.k {
        k @ 1..=MAX_PASSAGES => k,
        k => {
            return Err(ApiError::invalid(format!(
                "k must be between 1 and {MAX_PASSAGES}, got {k}"
            )));
        }
    };
    let filter = chunk_filter(request.filter)?;
    let session = match &request.session_id {
        Some(id) => Some(owned_session(&state, &caller, id).await?),
        None => None,
    };
    let (hits, _) = retrieve(&state, question, Mode::Hybrid, k, filter, None).await?;
    let passages: Vec<Passage> = hits
        .iter()
        .map(|h| Passage {
            title: h.entity.title.clone(),
            text: h.entity.body.clone(),
        })
        .collect();
    let answer = state
        .generator
        .answer(question, &passages)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "generator_failed", e.to_string()))?;
    let passage_ids: Vec<Uuid> = hits.iter().map(|h| h.entity.id).collect();
    let session = remember(
        &state,
        &caller,
        session,
        question,
        &answer.text,
        passage_ids,
    )
    .await?;
    settle(&state, &caller, answer.tokens).await;
    Ok(Json(AskResponse {
        session_id: session.id.to_hex(),
        answer: answer.text,
        passages: hits.into_iter().map(hit).collect(),
    }))
}

/// Charges the answer's real token count instead of the reservation's
/// estimate (a refund when it was shorter).
async fn settle(state: &AppState, caller: &Caller, answer_tokens: u64) {
    let Some(lease) = &caller.lease else { return };
    let actual = caller.charged - super::layer::ANSWER_TOKENS + answer_tokens;
    if let Err(error) = state.limiter.reconcile(lease, actual).await {
        tracing::warn!(%error, "token reservation not reconciled");
    }
}

/// The question and the answer, with the session's turn counter, in one
/// MongoDB unit of work.
async fn remember(
    state: &AppState,
    caller: &Caller,
    session: Option<ChatSession>,
    question: &str,
    answer: &str,
    passage_ids: Vec<Uuid>,
) -> Result<ChatSession, ApiError> {
    let unit = state.store.begin::<ChatSession>().await?;
    let sessions = unit.repo::<ChatSession>();
    let session = match session {
        Some(session) => {
            let turns = session.turns + 2;
            sessions.update(&ChatSession { turns, ..session }).await?
        }
        None => {
            let new = ChatSession {
                id: ObjectId::ZERO,
                owner: caller.name.clone(),
                turns: 2,
                version: 0,
                created_at: chrono::DateTime::UNIX_EPOCH,
                updated_at: chrono::DateTime::UNIX_EPOCH,
            };
            sessions.insert(&new).await?
        }
    };
    let message = |turn: i32, role: Role, text: &str, passage_ids: Vec<Uuid>| ChatMessage {
        id: ObjectId::ZERO,
        session_id: session.id,
        turn,
        role,
        text: text.to_owned(),
        passage_ids,
        created_at: chrono::DateTime::UNIX_EPOCH,
    };
    let first = session.turns - 2;
    let messages = [
        message(first, Role::User, question, Vec::new()),
        message(first + 1, Role::Assistant, answer, passage_ids),
    ];
    unit.repo::<ChatMessage>().insert_many(&messages).await?;
    unit.commit().await?;
    Ok(session)
}

/// The session `id` if it exists and belongs to the caller's key; another
/// key's session is as absent as a missing one.
async fn owned_session(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<ChatSession, ApiError> {
    let object_id: ObjectId = id
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid(format!("{id:?} is not a session id (24 hex digits)")))?;
    match state.store.repo::<ChatSession>()?.get(&object_id).await? {
        Some(session) if session.owner == caller.name => Ok(session),
        _ => Err(ApiError::not_found(format!("no session {object_id}"))),
    }
}

/// A conversation's messages.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    tag = "ask",
    params(("id" = String, Path, description = "The session's id (24 hex digits; the schema's pattern)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The conversation", body = SessionResponse),
        (status = 400, description = "Not a session id", body = ErrorBody),
        (status = 404, description = "No such session for this key", body = ErrorBody),
        (status = 401, description = "No or an unknown x-api-key (when the service has keys)", body = ErrorBody),
        (status = 413, description = "The body is too large, or larger than a limit could ever admit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 429, description = "A limit is spent; see Retry-After", body = ErrorBody),
        (status = 503, description = "A store or the model did not answer in time", body = ErrorBody),
    )
)]
pub async fn session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionResponse>, ApiError> {
    let Path(id) = id.map_err(super::path_error)?;
    let session = owned_session(&state, &caller, &id).await?;
    let mut messages = state
        .store
        .repo::<ChatMessage>()?
        .find(ChatMessage::SESSION_ID.eq(session.id))
        .order_by(ChatMessage::TURN.desc())
        .limit(MAX_MESSAGES)
        .await?;
    messages.reverse();
    Ok(Json(SessionResponse {
        session_id: session.id.to_hex(),
        created_at: session.created_at,
        messages: messages
            .into_iter()
            .map(|m| MessageView {
                turn: m.turn,
                role: match m.role {
                    Role::User => "user",
                    Role::Assistant => "assistant",
                }
                .to_owned(),
                text: m.text,
                passage_ids: m.passage_ids,
                created_at: m.created_at,
            })
            .collect(),
    }))
}
