//! Per-key limits: the rate-limit headers on every `/v1` response, 429
//! with `Retry-After` once a limit is spent, one key's use never charged
//! to another, and unknown keys refused.

use reposmith::testing::TestContext;
use reposmith_example_rag::config::{ApiKey, Config};
use serde_json::json;

use super::support::{self, Reply};

const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-9876543210xx";

fn keys() -> Vec<ApiKey> {
    [("alice", ALICE), ("bob", BOB)]
        .into_iter()
        .map(|(name, key)| ApiKey {
            name: name.into(),
            key: key.into(),
        })
        .collect()
}

fn number(reply: &Reply, header: &str) -> u64 {
    reply
        .header(header)
        .unwrap_or_else(|| panic!("no {header} in {:?}", reply.headers))
        .parse()
        .unwrap()
}

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn requests_per_minute_per_key_with_headers_and_retry_after(ctx: TestContext) {
    let config = Config {
        api_keys: keys(),
        requests_per_minute: 3,
        ..support::config(&ctx)
    };
    let service = support::start_with(&ctx, config).await;
    let search = json!({"query": "anything", "mode": "text"});
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let reply = service.post_json_as(ALICE, "/v1/search", &search).await;
        assert_eq!(reply.status, 200, "{}", reply.json());
        assert_eq!(number(&reply, "ratelimit-limit"), 3);
        assert!(number(&reply, "ratelimit-reset") <= 60);
        assert!(
            reply
                .header("ratelimit-policy")
                .unwrap()
                .contains("\"rag.rpm\";q=3")
        );
        assert!(
            reply
                .header("ratelimit")
                .unwrap()
                .contains("\"rag.rpm\";r=")
        );
        assert!(reply.header("retry-after").is_none());
        remaining.push(number(&reply, "ratelimit-remaining"));
    }
    assert_eq!(remaining, [2, 1, 0]);

    let refused = service.post_json_as(ALICE, "/v1/search", &search).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.error_code(), "rate_limited");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rpm")
    );
    let retry_after = number(&refused, "retry-after");
    assert!(
        (1..=20).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(number(&refused, "ratelimit-remaining"), 0);

    // Bob's budget is his own; no key or a wrong one is refused before any is charged.
    let reply = service.post_json_as(BOB, "/v1/search", &search).await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    assert_eq!(number(&reply, "ratelimit-remaining"), 2);
    let anonymous = service.post_json("/v1/search", &search).await;
    assert_eq!(
        (anonymous.status, anonymous.error_code().as_str()),
        (401, "unauthorized")
    );
    let wrong = service
        .post_json_as("alice-key-0123456788", "/v1/search", &search)
        .await;
    assert_eq!(
        (wrong.status, wrong.error_code().as_str()),
        (401, "unauthorized")
    );
    assert!(wrong.header("ratelimit-limit").is_none());
    // Pages and the API document are not limited.
    assert_eq!(service.get("/openapi.json").await.status, 200);
    service.stop().await;
}

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn tokens_per_minute_count_body_bytes(ctx: TestContext) {
    let config = Config {
        tokens_per_minute: 1_000,
        ..support::config(&ctx)
    };
    let service = support::start_with(&ctx, config).await;
    // About 2,400 bytes: 600 tokens of the 1,000 a minute.
    let query = "tokens ".repeat(340);
    let search = json!({"query": query.trim(), "mode": "text", "k": 1});
    let first = service.post_json("/v1/search", &search).await;
    // The query is over the default 1,000 characters: refused, but charged.
    assert_eq!(first.status, 400, "{}", first.json());
    assert!(number(&first, "ratelimit-remaining") < 1_000);
    let second = service.post_json("/v1/search", &search).await;
    assert_eq!(second.status, 429, "{}", second.json());
    assert!(
        second.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tpm")
    );
    assert!(number(&second, "retry-after") >= 1);
    // A body no minute could admit is too large, not "retry later".
    let huge = json!({"title": "t", "source": "s", "text": "y".repeat(5_000)});
    let reply = service.post_json("/v1/documents", &huge).await;
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (413, "payload_too_large")
    );
    support::assert_nothing_stored(&ctx).await;
    service.stop().await;
}
