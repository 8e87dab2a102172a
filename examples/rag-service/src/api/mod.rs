//! The HTTP API: routes, the request layer, JSON bodies and errors, and the
//! OpenAPI document generated from the handlers.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the search page |
//! | `GET /openapi.json` | this API's OpenAPI document |
//! | `POST /v1/documents` | ingest a document (202) |
//! | `GET /v1/documents/{id}` | its chunking and embedding state |
//! | `POST /v1/search` | vector, text or hybrid search, filtered, paged |
//! | `POST /v1/ask` | an answer from retrieved passages, in a conversation |
//! | `GET /v1/sessions/{id}` | a conversation's messages |

pub mod ask;
pub mod body;
pub mod documents;
pub mod error;
pub mod layer;
pub mod query_vectors;
pub mod search;
pub mod traces;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::app::AppState;
use crate::config::Config;
use error::ApiError;

/// The search page (written by the page's own tests' authors, served as is).
const INDEX_HTML: &str = include_str!("../../static/index.html");

/// Every route, behind the request layer.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/openapi.json", get(openapi))
        .route("/v1/documents", post(documents::ingest))
        .route("/v1/documents/{id}", get(documents::status))
        .route("/v1/search", post(search::search))
        .route("/v1/ask", post(ask::ask))
        .route("/v1/sessions/{id}", get(ask::session))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layer::layer,
        ))
        .with_state(state)
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

async fn openapi(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&document(&state.config)).unwrap_or_default(),
    )
        .into_response()
}

/// The OpenAPI document as served: [`ApiDoc`] with the bounds this
/// process enforces (the configured query length and `k`), the `Filter`
/// schema of searches and questions, and the session id's pattern.
pub fn document(config: &Config) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];
    schemas["Filter"] = filter_schema();
    let filter = serde_json::json!({
        "oneOf": [{"$ref": "#/components/schemas/Filter"}, {"type": "null"}],
        "description": "Only passages matching all of its fields; any other field is \
                        refused (unknown_filter_field).",
    });
    let max_chars = config.max_query_chars;
    let search = &mut schemas["SearchRequest"]["properties"];
    search["query"]["maxLength"] = max_chars.into();
    search["k"]["maximum"] = config.max_k.into();
    search["filter"] = filter.clone();
    let ask = &mut schemas["AskRequest"]["properties"];
    ask["question"]["maxLength"] = max_chars.into();
    ask["filter"] = filter;
    let session = &mut doc["paths"]["/v1/sessions/{id}"]["get"]["parameters"][0]["schema"];
    session["pattern"] = SESSION_ID_PATTERN.into();
    doc
}

/// A session id: a MongoDB ObjectId, 24 hex digits.
pub const SESSION_ID_PATTERN: &str = "^[0-9a-fA-F]{24}$";

/// The filter object [`search::chunk_filter`] reads.
fn filter_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "source": {
                "description": "The chunk's source: one, or any of a list.",
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"},
                     "maxItems": search::MAX_SOURCES},
                ],
            },
            "document_id": {"type": "string", "format": "uuid",
                            "description": "The chunk's document."},
            "metadata": {"type": "object",
                         "description": "An object the chunk's metadata contains (JSONB @>)."},
        },
    })
}

/// A path segment that could not be read (percent-encoded bytes that are
/// not UTF-8), as a JSON 400.
fn path_error(rejection: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::invalid(format!(
        "the path could not be read: {}",
        rejection.body_text()
    ))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; GET /openapi.json lists them")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; GET /openapi.json lists them",
    )
}

/// The OpenAPI document of the routes above.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "reposmith RAG service",
        description = "Documents in PostgreSQL (pgvector, full text), chunked and embedded by \
                       queue workers; vector, text and hybrid search; answers from retrieved \
                       passages with conversations in MongoDB; per-key limits in Redis. \
                       Errors are JSON: {\"error\": {\"code\", \"message\"}}."
    ),
    paths(
        documents::ingest,
        documents::status,
        search::search,
        ask::ask,
        ask::session
    ),
    modifiers(&KeyHeader)
)]
pub struct ApiDoc;

/// Declares the `x-api-key` header the routes name in `security`.
struct KeyHeader;

impl Modify for KeyHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::ApiDoc;
    use utoipa::OpenApi;

    #[test]
    fn the_openapi_document_states_the_bounds_the_handlers_enforce() {
        let config = crate::config::Config {
            max_query_chars: 300,
            max_k: 25,
            ..Default::default()
        };
        let doc = super::document(&config);
        let schemas = &doc["components"]["schemas"];
        let search = &schemas["SearchRequest"]["properties"];
        assert_eq!(search["query"]["minLength"], 1);
        assert_eq!(search["query"]["maxLength"], 300);
        assert_eq!(
            (&search["k"]["minimum"], &search["k"]["maximum"]),
            (&1.into(), &25.into())
        );
        let ask = &schemas["AskRequest"]["properties"];
        assert_eq!(ask["question"]["maxLength"], 300);
        assert_eq!(ask["k"]["maximum"], super::ask::MAX_PASSAGES);
        assert_eq!(ask["session_id"]["pattern"], super::SESSION_ID_PATTERN);
        for request in [search, ask] {
            let filter = &request["filter"]["oneOf"][0]["$ref"];
            assert_eq!(filter, "#/components/schemas/Filter");
        }
        let filter = &schemas["Filter"];
        assert_eq!(filter["additionalProperties"], false);
        let fields: Vec<&String> = filter["properties"].as_object().unwrap().keys().collect();
        assert_eq!(fields.len(), super::search::FILTER_FIELDS.len());
        for field in super::search::FILTER_FIELDS {
            assert!(filter["properties"][field].is_object(), "Filter.{field}");
        }
        let sources = &filter["properties"]["source"]["oneOf"][1]["maxItems"];
        assert_eq!(sources, super::search::MAX_SOURCES);
        let ingest = &schemas["IngestRequest"]["properties"];
        assert_eq!(
            ingest["title"]["maxLength"],
            super::documents::MAX_TITLE_CHARS
        );
        assert_eq!(
            ingest["source"]["maxLength"],
            super::documents::MAX_SOURCE_CHARS
        );
        let session = &doc["paths"]["/v1/sessions/{id}"]["get"]["parameters"][0]["schema"];
        assert_eq!(session["pattern"], super::SESSION_ID_PATTERN);
        let detail = &schemas["ErrorDetail"]["properties"];
        assert_eq!(detail["document_id"]["format"], "uuid");
    }

    #[test]
    fn the_openapi_document_has_every_route_and_the_page_contract() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, method) in [
            ("/v1/documents", "post"),
            ("/v1/documents/{id}", "get"),
            ("/v1/search", "post"),
            ("/v1/ask", "post"),
            ("/v1/sessions/{id}", "get"),
        ] {
            assert!(doc["paths"][path][method].is_object(), "{method} {path}");
        }
        let schemas = &doc["components"]["schemas"];
        let response = &schemas["SearchResponse"]["properties"];
        for field in ["results", "next_cursor", "took_ms"] {
            assert!(response[field].is_object(), "SearchResponse.{field}");
        }
        let hit = &schemas["Hit"]["properties"];
        for field in [
            "chunk_id",
            "document_id",
            "title",
            "source",
            "text",
            "distance",
            "score",
        ] {
            assert!(hit[field].is_object(), "Hit.{field}");
        }
        assert!(schemas["ErrorBody"]["properties"]["error"].is_object());
        let scheme = &doc["components"]["securitySchemes"]["api_key"];
        assert_eq!(scheme["in"], "header");
        assert_eq!(scheme["name"], "x-api-key");
    }
}
