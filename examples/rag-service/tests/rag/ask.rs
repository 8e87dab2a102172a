//! An application's generator plugged into `/v1/ask`: it gets the question
//! and the retrieved passages, its answer is returned and remembered, and
//! the tokens it reports replace the reservation's estimate.

use std::sync::Arc;

use reposmith::BoxFuture;
use reposmith::testing::TestContext;
use reposmith_example_rag::answer::{Answer, GenerateError, Generator, Passage};
use reposmith_example_rag::config::Config;
use serde_json::json;

use super::support;

/// Answers with what it was given; reports 100 tokens.
struct Echo;

impl Generator for Echo {
    fn answer<'a>(
        &'a self,
        question: &'a str,
        passages: &'a [Passage],
    ) -> BoxFuture<'a, Result<Answer, GenerateError>> {
        Box::pin(async move {
            Ok(Answer {
                text: format!("{} passages for {question:?}", passages.len()),
                tokens: 100,
            })
        })
    }
}

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn a_plugged_generator_answers_and_its_tokens_are_charged(ctx: TestContext) {
    let config = Config {
        tokens_per_minute: 1_000,
        ..support::config(&ctx)
    };
    let service = support::start_with_generator(&ctx, config, Arc::new(Echo)).await;
    let text = "Kestrels hover over fields.\n\nThey hunt voles from the air.";
    let reply = service
        .post_json(
            "/v1/documents",
            &json!({"title": "Kestrels", "source": "birds", "text": text}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.json());
    service
        .wait_ready(
            reply.json()["id"].as_str().unwrap(),
            std::time::Duration::from_secs(30),
        )
        .await;

    let reply = service
        .post_json("/v1/ask", &json!({"question": "What do kestrels hunt?"}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    assert_eq!(
        reply.json()["answer"],
        "1 passages for \"What do kestrels hunt?\""
    );
    // The question's tokens plus the 512 reserved for the answer.
    let reserved: u64 = reply
        .header("ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    let session = reply.json()["session_id"].as_str().unwrap().to_owned();

    // The answer cost 100: 412 came back (a minute refills 1,000, so a
    // second or two of refill alone cannot explain it).
    let reply = service.get(&format!("/v1/sessions/{session}")).await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    let after: u64 = reply
        .header("ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert!(after >= reserved + 350, "remaining {reserved} then {after}");
    assert_eq!(
        reply.json()["messages"][1]["text"],
        "1 passages for \"What do kestrels hunt?\""
    );
    service.stop().await;
}
