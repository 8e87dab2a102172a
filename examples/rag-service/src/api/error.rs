//! Every failure the API answers, as `{"error": {"code", "message"}}` with
//! a 4xx or 5xx status. Clients branch on `code`; `message` is for people.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An API failure: a status, a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`invalid_json`, `rate_limited`, ...).
    pub code: &'static str,
    /// What went wrong and what is accepted.
    pub message: String,
    /// The document a `duplicate_document` conflict names.
    pub document_id: Option<uuid::Uuid>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The failure.
    pub error: ErrorDetail,
}

/// The failure inside [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `invalid_json`, `invalid_request`, `unknown_filter_field`,
    /// `unsupported_media_type`, `payload_too_large`, `unauthorized`,
    /// `not_found`, `method_not_allowed`, `duplicate_document`,
    /// `rate_limited`, `timeout`, `unavailable`, `internal`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// With `duplicate_document` (409): the stored document holding the
    /// same text. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<uuid::Uuid>,
}

impl ApiError {
    /// An error of `status` with `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            document_id: None,
        }
    }

    /// The same error naming `document` (see [`ErrorDetail::document_id`]).
    pub fn with_document(self, document: uuid::Uuid) -> ApiError {
        ApiError {
            document_id: Some(document),
            ..self
        }
    }

    /// 400 `invalid_request`: a field's value is not accepted.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                document_id: self.document_id,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The code of an error response, for the request's trace.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// reposmith's typed errors mapped once: bad input is the client's (400,
/// 409, 413), a store that is down or slow is 503, the rest is 500 with a
/// message that names no internals.
impl From<reposmith::Error> for ApiError {
    fn from(error: reposmith::Error) -> ApiError {
        use reposmith::Error as E;
        match &error {
            E::InvalidInput { .. } => ApiError::invalid(error.to_string()),
            E::TooLarge { .. } | E::ExceedsCapacity { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                error.to_string(),
            ),
            E::NotFound { .. } => ApiError::not_found(error.to_string()),
            E::Conflict { .. } | E::StaleVersion { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
            }
            E::Connect { .. }
            | E::PoolTimeout { .. }
            | E::Timeout { .. }
            | E::ConnectionLost { .. }
            | E::Unavailable { .. }
            | E::Retryable { .. }
            | E::Embedding { .. } => {
                tracing::warn!(%error, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a backing store did not answer in time; retry shortly",
                )
            }
            _ => {
                tracing::error!(%error, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request failed; its trace has the request id",
                )
            }
        }
    }
}
