//! Bad input of every kind: a 4xx with a JSON error naming what is wrong,
//! never a 500, and nothing stored or queued.

use axum::http::Method;
use reposmith::prelude::*;
use reposmith::testing::TestContext;
use reposmith_example_rag::config::Config;
use reposmith_example_rag::domain::RequestTrace;
use serde_json::{Value, json};

use super::support::{self, Reply, TestService};

const JSON: (&str, &str) = ("content-type", "application/json");

fn check(reply: &Reply, status: u16, code: &str, mentions: &str, case: &str) {
    assert_eq!(
        reply.status,
        status,
        "{case}: {:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{case}"
    );
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{case}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{case}: {message:?} does not mention {mentions:?}"
    );
}

async fn raw(service: &TestService, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    service
        .send(Method::POST, path, headers, body.to_vec())
        .await
}

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn bad_input_is_a_json_4xx_and_stores_nothing(ctx: TestContext) {
    let config = Config {
        max_body_bytes: 64 * 1024,
        max_document_bytes: 16 * 1024,
        max_query_chars: 200,
        ..support::config(&ctx)
    };
    let service = support::start_with(&ctx, config).await;
    let doc = |text: Value| json!({"title": "t", "source": "s", "text": text});

    let cases: Vec<(&str, Reply, u16, &str, &str)> = vec![
        (
            "empty query",
            service.post_json("/v1/search", &json!({"query": ""})).await,
            400,
            "invalid_request",
            "query is empty",
        ),
        (
            "blank query",
            service
                .post_json("/v1/search", &json!({"query": " \n\t "}))
                .await,
            400,
            "invalid_request",
            "query is empty",
        ),
        (
            "oversized query",
            service
                .post_json("/v1/search", &json!({"query": "a".repeat(201)}))
                .await,
            400,
            "invalid_request",
            "the limit is 200",
        ),
        (
            "NUL in query",
            service
                .post_json("/v1/search", &json!({"query": "a\u{0}b"}))
                .await,
            400,
            "invalid_request",
            "NUL",
        ),
        (
            "unknown filter field",
            service
                .post_json(
                    "/v1/search",
                    &json!({"query": "x", "filter": {"colour": "red"}}),
                )
                .await,
            400,
            "unknown_filter_field",
            "\"colour\"",
        ),
        (
            "filter of the wrong type",
            service
                .post_json(
                    "/v1/search",
                    &json!({"query": "x", "filter": {"source": 7}}),
                )
                .await,
            400,
            "invalid_request",
            "filter.source",
        ),
        (
            "too many sources",
            service
                .post_json(
                    "/v1/search",
                    &json!({"query": "x", "filter": {"source": vec!["s"; 101]}}),
                )
                .await,
            400,
            "invalid_request",
            "the limit is 100",
        ),
        (
            "filter not an object",
            service
                .post_json("/v1/search", &json!({"query": "x", "filter": [1]}))
                .await,
            400,
            "invalid_request",
            "filter must be an object",
        ),
        (
            "unknown request field",
            service
                .post_json("/v1/search", &json!({"query": "x", "limit": 3}))
                .await,
            400,
            "invalid_request",
            "limit",
        ),
        (
            "unknown mode",
            service
                .post_json("/v1/search", &json!({"query": "x", "mode": "fuzzy"}))
                .await,
            400,
            "invalid_request",
            "fuzzy",
        ),
        (
            "k of 0",
            service
                .post_json("/v1/search", &json!({"query": "x", "k": 0}))
                .await,
            400,
            "invalid_request",
            "k must be",
        ),
        (
            "k too large",
            service
                .post_json("/v1/search", &json!({"query": "x", "k": 51}))
                .await,
            400,
            "invalid_request",
            "k must be",
        ),
        (
            "garbage cursor",
            service
                .post_json(
                    "/v1/search",
                    &json!({"query": "x", "mode": "text", "cursor": "nope"}),
                )
                .await,
            400,
            "invalid_request",
            "cursor",
        ),
        (
            "hybrid cursor",
            service
                .post_json("/v1/search", &json!({"query": "x", "cursor": "[1.0]"}))
                .await,
            400,
            "invalid_request",
            "raise k",
        ),
        (
            "non-UTF-8 body",
            raw(&service, "/v1/search", &[JSON], b"{\"query\": \"caf\xe9\"}").await,
            400,
            "invalid_utf8",
            "not UTF-8",
        ),
        (
            "malformed JSON",
            raw(&service, "/v1/search", &[JSON], b"{\"query\": ").await,
            400,
            "invalid_json",
            "EOF",
        ),
        (
            "JSON not an object",
            raw(&service, "/v1/search", &[JSON], b"[\"query\"]").await,
            400,
            "invalid_request",
            "a JSON object",
        ),
        (
            "wrong content type",
            raw(
                &service,
                "/v1/search",
                &[("content-type", "text/plain")],
                b"{\"query\": \"x\"}",
            )
            .await,
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "no content type",
            raw(&service, "/v1/documents", &[], b"{}").await,
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "huge document",
            service
                .post_json("/v1/documents", &doc(json!("word ".repeat(4_000))))
                .await,
            413,
            "payload_too_large",
            "the limit is 16384",
        ),
        (
            "huge body",
            raw(&service, "/v1/documents", &[JSON], &vec![b' '; 65 * 1024]).await,
            413,
            "payload_too_large",
            "65536",
        ),
        (
            "blank text",
            service
                .post_json("/v1/documents", &doc(json!("  \n\n  ")))
                .await,
            400,
            "invalid_request",
            "text is blank",
        ),
        (
            "missing text",
            service
                .post_json("/v1/documents", &json!({"title": "t", "source": "s"}))
                .await,
            400,
            "invalid_request",
            "text",
        ),
        (
            "text not a string",
            service.post_json("/v1/documents", &doc(json!(12))).await,
            400,
            "invalid_request",
            "string",
        ),
        (
            "blank title",
            service
                .post_json(
                    "/v1/documents",
                    &json!({"title": "", "source": "s", "text": "x"}),
                )
                .await,
            400,
            "invalid_request",
            "title is blank",
        ),
        (
            "NUL in text",
            service
                .post_json("/v1/documents", &doc(json!("a\u{0}b")))
                .await,
            400,
            "invalid_request",
            "NUL",
        ),
        (
            "metadata not an object",
            service
                .post_json(
                    "/v1/documents",
                    &json!({"title": "t", "source": "s", "text": "x", "metadata": [1]}),
                )
                .await,
            400,
            "invalid_request",
            "metadata",
        ),
        (
            "NUL in metadata",
            service
                .post_json(
                    "/v1/documents",
                    &json!({"title": "t", "source": "s", "text": "x", "metadata": {"k": "\u{0}"}}),
                )
                .await,
            400,
            "invalid_request",
            "metadata",
        ),
        (
            "empty question",
            service.post_json("/v1/ask", &json!({"question": ""})).await,
            400,
            "invalid_request",
            "question is empty",
        ),
        (
            "unknown filter field of a question",
            service
                .post_json(
                    "/v1/ask",
                    &json!({"question": "why", "filter": {"colour": "red"}}),
                )
                .await,
            400,
            "unknown_filter_field",
            "\"colour\"",
        ),
        (
            "NUL in a metadata filter",
            service
                .post_json(
                    "/v1/search",
                    &json!({"query": "x", "filter": {"metadata": {"k": ["a\u{0}"]}}}),
                )
                .await,
            400,
            "invalid_request",
            "filter.metadata",
        ),
        (
            "NUL in a source filter",
            service
                .post_json(
                    "/v1/ask",
                    &json!({"question": "x", "filter": {"source": ["a\u{0}"]}}),
                )
                .await,
            400,
            "invalid_request",
            "filter.source",
        ),
        (
            "bad session id",
            service
                .post_json("/v1/ask", &json!({"question": "why", "session_id": "zz"}))
                .await,
            400,
            "invalid_request",
            "session id",
        ),
        (
            "unknown session",
            service
                .post_json(
                    "/v1/ask",
                    &json!({"question": "why", "session_id": "65a1b2c3d4e5f60718293a4b"}),
                )
                .await,
            404,
            "not_found",
            "no session",
        ),
        (
            "bad document id",
            service.get("/v1/documents/not-a-uuid").await,
            400,
            "invalid_request",
            "not a document id",
        ),
        (
            "unknown document",
            service
                .get("/v1/documents/0190b7a4-54c4-7cc5-8ad4-05ab6b3e6f00")
                .await,
            404,
            "not_found",
            "no document",
        ),
        (
            "bad session path",
            service.get("/v1/sessions/123").await,
            400,
            "invalid_request",
            "session id",
        ),
        (
            "unknown route",
            service.get("/v2/anything").await,
            404,
            "not_found",
            "no such route",
        ),
        (
            "wrong method",
            service.get("/v1/search").await,
            405,
            "method_not_allowed",
            "method",
        ),
    ];
    for (case, reply, status, code, mentions) in &cases {
        check(reply, *status, code, mentions, case);
    }

    support::assert_nothing_stored(&ctx).await;
    // Each refusal is traced with its code.
    service.flush_traces().await;
    let traces = ctx.store().repo::<RequestTrace>().unwrap();
    let refused = traces.count(RequestTrace::STATUS.ge(400)).await.unwrap();
    assert_eq!(refused, cases.len() as u64);
    let unknown = traces
        .count(RequestTrace::ERROR.eq("unknown_filter_field".to_owned()))
        .await
        .unwrap();
    assert_eq!(unknown, 2);
    service.stop().await;
}
