//! The request layer every route runs behind: a request id, the caller's
//! API key, the body read within its bound, the caller's limits (with the
//! rate-limit headers on every `/v1` response), the request timeout, and a
//! trace of the request in MongoDB, handed to the
//! [`TraceWriter`](super::traces::TraceWriter) so that no response waits
//! for it.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use reposmith::ObjectId;
use reposmith::limit::{Decision, Denial, Lease};
use uuid::Uuid;

use super::error::{ApiError, ErrorCode};
use crate::app::AppState;
use crate::domain::RequestTrace;

/// Tokens reserved for an answer of `/v1/ask` on top of the question's;
/// the handler settles the difference once the answer is written.
pub const ANSWER_TOKENS: u64 = 512;

/// The most characters of an unmatched path a trace keeps.
const MAX_TRACED_PATH: usize = 200;

/// Who is calling and what their limits admitted; in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The API key's name (`anonymous` when the service asks for no key).
    pub name: String,
    /// The tokens charged before the handler ran.
    pub charged: u64,
    /// A reservation to settle (`/v1/ask` only).
    pub lease: Option<Lease>,
}

/// The layer itself; see the module docs.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = Uuid::now_v7().to_string();
    let method = request.method().to_string();
    let route = match request.extensions().get::<MatchedPath>() {
        Some(matched) => matched.as_str().to_owned(),
        // No route matched: the path, cut to a bounded length.
        None => request.uri().path().chars().take(MAX_TRACED_PATH).collect(),
    };
    let mut caller = String::new();
    let mut bytes = 0;
    // The timeout covers reading the body too: a slow upload is cut off.
    let mut response = match route.starts_with("/v1/") {
        true => {
            bounded(
                &state,
                limited(&state, &route, request, next, &mut caller, &mut bytes),
            )
            .await
        }
        false => bounded(&state, next.run(request)).await,
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let trace = RequestTrace {
        id: ObjectId::ZERO,
        request_id,
        method,
        route,
        status: i32::from(response.status().as_u16()),
        caller,
        request_bytes: bytes as i64,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
        error: response
            .extensions()
            .get::<ErrorCode>()
            .map(|c| c.0.to_owned()),
        created_at: chrono::DateTime::UNIX_EPOCH,
    };
    state.traces.record(trace);
    response
}

/// A `/v1` request: key, body, limits, handler.
async fn limited(
    state: &AppState,
    route: &str,
    request: Request,
    next: Next,
    caller: &mut String,
    bytes: &mut usize,
) -> Response {
    let name = match authenticate(state, request.headers()) {
        Ok(name) => name,
        Err(error) => return error.into_response(),
    };
    caller.clone_from(&name);
    let (parts, body) = request.into_parts();
    let body = match read_body(state, &parts.headers, body).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    *bytes = body.len();
    let asks = route == "/v1/ask";
    let tokens = (body.len() as u64).div_ceil(4).max(1);
    let charged = tokens + if asks { ANSWER_TOKENS } else { 0 };
    let decision = match asks {
        true => state.limiter.reserve(&name, charged).await,
        false => state.limiter.check(&name, charged).await,
    };
    let mut decision = match decision {
        Ok(decision) => decision,
        Err(error) => return ApiError::from(error).into_response(),
    };
    if !decision.allowed {
        let mut response = refused(&decision).into_response();
        rate_headers(response.headers_mut(), &decision);
        return response;
    }
    let mut request = Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(Caller {
        name,
        charged,
        lease: decision.lease.take(),
    });
    let mut response = next.run(request).await;
    rate_headers(response.headers_mut(), &decision);
    response
}

/// A request within the request timeout: 503 `timeout` past it.
async fn bounded(state: &AppState, handler: impl Future<Output = Response>) -> Response {
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, handler).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {limit:?}"),
        )
        .into_response(),
    }
}

/// The key's name; `anonymous` when the service has no keys.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let keys = &state.config.api_keys;
    if keys.is_empty() {
        return Ok("anonymous".to_owned());
    }
    let unauthorized =
        |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned());
    let Some(sent) = headers.get("x-api-key") else {
        return Err(unauthorized("send an API key in the x-api-key header"));
    };
    // Every key is compared in full, so the time taken says nothing of
    // which key, or how much of one, matched.
    let mut found = None;
    for key in keys {
        if constant_time_eq(key.key.as_bytes(), sent.as_bytes()) {
            found = Some(key.name.clone());
        }
    }
    found.ok_or_else(|| unauthorized("the x-api-key header holds no known key"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let longest = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..longest {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// The whole body, refused past `max_body_bytes` (by its declared length
/// before reading anything, or while reading one that declared none).
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limit);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body could not be read: {error}"),
        )),
    }
}

/// 429 with `Retry-After` when a limit denied; 503 when the limiter could
/// not be asked and the service runs its limits closed.
fn refused(decision: &Decision) -> ApiError {
    match &decision.denied {
        Some(Denial::Limit { name }) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "the {name} limit is spent; retry in {} s",
                decision.retry_after_header().unwrap_or(1)
            ),
        ),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the rate limiter is unavailable; retry shortly",
        ),
    }
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (the binding
/// limit's capacity, what is left of it, seconds until it is full again),
/// the IETF draft's `RateLimit-Policy` and `RateLimit` for every limit, and
/// `Retry-After` on a denial.
fn rate_headers(headers: &mut HeaderMap, decision: &Decision) {
    let reset = decision.reset_after.as_secs() + u64::from(decision.reset_after.subsec_nanos() > 0);
    let classic = [
        ("ratelimit-limit", decision.limit.to_string()),
        ("ratelimit-remaining", decision.remaining.to_string()),
        ("ratelimit-reset", reset.to_string()),
    ];
    for (name, value) in classic.into_iter().chain(decision.headers()) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn keys_compare_in_full() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcde"));
        assert!(!constant_time_eq(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
