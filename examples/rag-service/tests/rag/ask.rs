//! An application's generator plugged into `/v1/ask`: it gets the question
//! and the retrieved passages, its answer is returned and remembered, and
//! the tokens it reports replace the reservation's estimate.

use std::sync::Arc;

use reposmith::BoxFuture;
use reposmith::prelude::*;
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

/// `/v1/ask` takes the search's filter: only matching passages are
/// retrieved; an unknown field is refused before anything is stored.
#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn questions_take_the_search_filter(ctx: TestContext) {
    let service = support::start(&ctx).await;
    let mut ids = Vec::new();
    for (title, source, shelf) in [
        ("Kestrels", "birds", "north"),
        ("Kestrel lore", "myths", "south"),
    ] {
        let text = format!("{title}: kestrels hover over fields.\n\nThey hunt voles from the air.");
        let body = json!({"title": title, "source": source, "text": text,
                          "metadata": {"shelf": shelf}});
        let reply = service.post_json("/v1/documents", &body).await;
        assert_eq!(reply.status, 202, "{}", reply.json());
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        service
            .wait_ready(&id, std::time::Duration::from_secs(30))
            .await;
        ids.push(id);
    }
    let question = "What do kestrels hunt?";
    let sources = |reply: &support::Reply| -> Vec<String> {
        let passages = reply.json()["passages"].as_array().unwrap().clone();
        passages
            .iter()
            .map(|p| p["source"].as_str().unwrap().to_owned())
            .collect()
    };
    let unfiltered = service
        .post_json("/v1/ask", &json!({"question": question}))
        .await;
    assert_eq!(unfiltered.status, 200, "{}", unfiltered.json());
    assert_eq!(sources(&unfiltered).len(), 2);
    for (filter, source) in [
        (json!({"source": "myths"}), "myths"),
        (json!({"source": ["birds", "elsewhere"]}), "birds"),
        (json!({"metadata": {"shelf": "south"}}), "myths"),
        (json!({"document_id": ids[0]}), "birds"),
    ] {
        let body = json!({"question": question, "filter": filter});
        let reply = service.post_json("/v1/ask", &body).await;
        assert_eq!(reply.status, 200, "{filter} -> {}", reply.json());
        assert_eq!(sources(&reply), [source], "{filter}");
    }
    let nothing = json!({"question": question, "filter": {"source": "nowhere"}});
    let reply = service.post_json("/v1/ask", &nothing).await;
    assert_eq!(reply.json()["passages"], json!([]));

    let sessions = ctx
        .store()
        .repo::<reposmith_example_rag::domain::ChatSession>();
    let before = sessions.unwrap().count(Filter::all()).await.unwrap();
    let bad = json!({"question": question, "filter": {"shelf": "south"}});
    let reply = service.post_json("/v1/ask", &bad).await;
    assert_eq!(
        (reply.status, reply.error_code().as_str()),
        (400, "unknown_filter_field")
    );
    let sessions = ctx
        .store()
        .repo::<reposmith_example_rag::domain::ChatSession>();
    let after = sessions.unwrap().count(Filter::all()).await.unwrap();
    assert_eq!(before, after, "a refused question started a conversation");
    service.stop().await;
}
