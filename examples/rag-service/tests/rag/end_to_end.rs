//! Ingest → search → ask over HTTP, on 300 passages: documents chunked and
//! embedded by the workers, every search mode with filters and pages, the
//! search cache, a conversation and the request traces in MongoDB.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reposmith::prelude::*;
use reposmith::testing::TestContext;
use reposmith_example_rag::domain::{
    ChatMessage, ChatSession, Chunk, ChunkRepository, Document, RequestTrace,
    RequestTraceRepository,
};
use serde_json::{Value, json};

use super::support::{self, CountingEmbedder, TestService};

const DOCUMENTS: usize = 10;
const PARAGRAPHS: usize = 30;

const ANIMALS: [&str; 10] = [
    "otter", "heron", "badger", "lynx", "marten", "puffin", "walrus", "ibis", "tapir", "gecko",
];
const PLACES: [&str; 6] = ["river", "marsh", "forest", "tundra", "reef", "valley"];
const HABITS: [&str; 5] = [
    "hunts at dawn",
    "sleeps through the winter",
    "travels in small groups",
    "builds a nest of reeds",
    "marks its territory with scent",
];

/// Paragraph `p` of document `d`: about 650 characters, so each is a passage
/// of its own; its first sentence has a word no other paragraph has.
fn paragraph(d: usize, p: usize) -> String {
    let animal = ANIMALS[d];
    let place = PLACES[(d + p) % PLACES.len()];
    let mut text = format!("Field note {d}x{p} marker{d}q{p}: the {animal} of the {place}. ");
    let mut i = 0;
    while text.len() < 640 {
        let habit = HABITS[(p + i) % HABITS.len()];
        text.push_str(&format!(
            "Observers of the {place} report that the {animal} {habit}, \
             season {i} of survey {d}.{p}. "
        ));
        i += 1;
    }
    text.trim_end().to_owned()
}

fn document(d: usize) -> Value {
    let text = (0..PARAGRAPHS)
        .map(|p| paragraph(d, p))
        .collect::<Vec<_>>()
        .join("\n\n");
    json!({
        "title": format!("Notes on the {}", ANIMALS[d]),
        "source": format!("survey-{}", d % 2),
        "text": text,
        "metadata": {"animal": ANIMALS[d], "volume": d, "tags": ["field", ANIMALS[d]]},
    })
}

async fn ingest_all(service: &TestService) -> Vec<String> {
    let mut ids = Vec::new();
    for d in 0..DOCUMENTS {
        let reply = service.post_json("/v1/documents", &document(d)).await;
        assert_eq!(reply.status, 202, "{}", reply.json());
        assert_eq!(reply.json()["status"], "received");
        ids.push(reply.json()["id"].as_str().expect("an id").to_owned());
    }
    for id in &ids {
        let status = service.wait_ready(id, Duration::from_secs(90)).await;
        assert_eq!(status["chunks"]["total"], PARAGRAPHS, "{status}");
        assert_eq!(status["chunks"]["embedded"], PARAGRAPHS, "{status}");
    }
    ids
}

async fn search(service: &TestService, body: Value) -> Value {
    let reply = service.post_json("/v1/search", &body).await;
    assert_eq!(reply.status, 200, "{body} -> {}", reply.json());
    reply.json()
}

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn ingest_search_and_ask_end_to_end(ctx: TestContext) {
    let service = support::start(&ctx).await;
    let page = service.get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let openapi = service.get("/openapi.json").await;
    assert_eq!(openapi.status, 200);
    assert!(openapi.json()["paths"]["/v1/search"]["post"].is_object());
    let ids = ingest_all(&service).await;
    let store = ctx.store();
    let chunks = store.repo::<Chunk>().unwrap();
    assert_eq!(chunks.count(Filter::all()).await.unwrap(), 300);

    // Vector: a passage's own text is its nearest neighbour.
    let wanted = paragraph(3, 7);
    let page = search(&service, json!({"query": wanted, "mode": "vector", "k": 5})).await;
    let top = &page["results"][0];
    assert_eq!(top["text"], wanted.as_str());
    assert_eq!(top["document_id"], ids[3].as_str());
    assert_eq!(top["title"], "Notes on the lynx");
    assert_eq!(top["source"], "survey-1");
    assert!(top["distance"].as_f64().unwrap() < 1e-4, "{top}");
    assert!(page["took_ms"].as_f64().is_some());

    // Text: the one paragraph with the marker word.
    let page = search(
        &service,
        json!({"query": "marker5q12", "mode": "text", "k": 3}),
    )
    .await;
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{page}");
    assert!(results[0]["text"].as_str().unwrap().contains("marker5q12"));
    assert_eq!(page["next_cursor"], Value::Null);

    // Hybrid with a metadata filter: only that animal's passages.
    let page = search(
        &service,
        json!({"query": "the heron hunts at dawn", "k": 8, "filter": {"metadata": {"animal": "heron"}}}),
    )
    .await;
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    assert!(results.iter().all(|r| r["document_id"] == ids[1].as_str()));
    assert_eq!(page["next_cursor"], Value::Null);

    // Source filters (one or several) and a document filter.
    let page = search(
        &service,
        json!({"query": "observers report", "mode": "text", "k": 50, "filter": {"source": "survey-0"}}),
    )
    .await;
    assert!(
        page["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["source"] == "survey-0")
    );
    let page = search(
        &service,
        json!({"query": "otter", "mode": "vector", "k": 50,
               "filter": {"source": ["survey-0", "survey-1"], "document_id": ids[0]}}),
    )
    .await;
    assert_eq!(page["results"].as_array().unwrap().len(), 30);

    pages_neither_skip_nor_repeat(&service).await;
    repeated_searches_come_from_the_cache(&ctx, &service).await;
    conversation(&ctx, &service).await;

    // Every request left a trace in MongoDB.
    service.flush_traces().await;
    let traces = store.repo::<RequestTrace>().unwrap();
    let searches = traces
        .count(RequestTrace::ROUTE.eq("/v1/search") & RequestTrace::STATUS.eq(200))
        .await
        .unwrap();
    assert!(searches >= 8, "{searches} search traces");
    let ingests = traces
        .count(RequestTrace::ROUTE.eq("/v1/documents") & RequestTrace::STATUS.eq(202))
        .await
        .unwrap();
    assert_eq!(ingests, DOCUMENTS as u64);
    let one = traces
        .find_all_by_route("/v1/search")
        .await
        .unwrap()
        .remove(0);
    assert_eq!(one.caller, "anonymous");
    assert!(one.request_bytes > 0 && one.took_ms > 0.0);
    assert_eq!(
        store
            .repo::<Document>()
            .unwrap()
            .count(Filter::all())
            .await
            .unwrap(),
        10
    );
    service.stop().await;
}

/// Vector pages of 10 through one document's 30 passages, then text pages
/// through a source: every passage once, in rank order.
async fn pages_neither_skip_nor_repeat(service: &TestService) {
    for (mode, query, filter, expected) in [
        (
            "vector",
            "walrus survey season",
            json!({"metadata": {"animal": "walrus"}}),
            30,
        ),
        ("text", "survey season", json!({"source": "survey-1"}), 150),
    ] {
        let mut seen = HashSet::new();
        let mut scores = Vec::new();
        let mut cursor = Value::Null;
        for _ in 0..40 {
            let body = json!({"query": query, "mode": mode, "k": 10,
                              "filter": filter, "cursor": cursor});
            let page = search(service, body).await;
            for hit in page["results"].as_array().unwrap() {
                assert!(
                    seen.insert(hit["chunk_id"].as_str().unwrap().to_owned()),
                    "{hit}"
                );
                scores.push(hit["score"].as_f64().unwrap());
            }
            cursor = page["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        assert_eq!(seen.len(), expected, "{mode}");
        let ordered = match mode {
            "vector" => scores.windows(2).all(|w| w[0] <= w[1]),
            _ => scores.windows(2).all(|w| w[0] >= w[1]),
        };
        assert!(ordered, "{mode} scores out of order: {scores:?}");
    }
}

/// The same search twice: the second is a cache hit; the cursor the
/// service makes for a cached first page is the one an uncached first page
/// carries.
async fn repeated_searches_come_from_the_cache(ctx: &TestContext, service: &TestService) {
    let cache = ctx.store().cache().expect("the test store has a cache");
    for (mode, query) in [
        ("vector", "the badger sleeps"),
        ("text", "badger"),
        ("hybrid", "badger"),
    ] {
        let body = json!({"query": query, "mode": mode, "k": 7});
        let first = search(service, body.clone()).await;
        let hits_before = cache.stats().hits;
        let second = search(service, body).await;
        assert!(cache.stats().hits > hits_before, "{mode}: no cache hit");
        assert_eq!(first["results"], second["results"], "{mode}");
        assert_eq!(first["next_cursor"], second["next_cursor"], "{mode}");
    }
    let chunks = ctx.store().repo::<Chunk>().unwrap();
    let uncached = chunks
        .search_embedding_by_text("the badger sleeps", 7)
        .page_after(None)
        .await
        .unwrap();
    let served = search(
        service,
        json!({"query": "the badger sleeps", "mode": "vector", "k": 7}),
    )
    .await;
    assert_eq!(served["next_cursor"], uncached.next.unwrap().as_str());
    let uncached = chunks
        .search_text("badger", 7)
        .page_after(None)
        .await
        .unwrap();
    let served = search(service, json!({"query": "badger", "mode": "text", "k": 7})).await;
    assert_eq!(served["next_cursor"], uncached.next.unwrap().as_str());
}

/// Two questions in one session: answers cite retrieved passages, and the
/// conversation is in MongoDB, in order, with the passage ids.
async fn conversation(ctx: &TestContext, service: &TestService) {
    let question = "Where does the puffin build a nest of reeds?";
    let reply = service
        .post_json("/v1/ask", &json!({"question": question, "k": 3}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    let first = reply.json();
    let session_id = first["session_id"].as_str().unwrap().to_owned();
    assert_eq!(first["passages"].as_array().unwrap().len(), 3);
    let answer = first["answer"].as_str().unwrap();
    assert!(
        answer.contains("[1]") || answer.contains("[2]") || answer.contains("[3]"),
        "{answer}"
    );
    assert!(answer.contains("nest of reeds"), "{answer}");

    let reply = service
        .post_json(
            "/v1/ask",
            &json!({"session_id": session_id, "question": "And the gecko?"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    assert_eq!(reply.json()["session_id"], session_id.as_str());
    assert_eq!(reply.json()["passages"].as_array().unwrap().len(), 4);

    let reply = service.get(&format!("/v1/sessions/{session_id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    let messages = reply.json()["messages"].as_array().unwrap().clone();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(messages[0]["text"], question);
    let cited: Vec<&Value> = first["passages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["chunk_id"])
        .collect();
    let stored: Vec<&Value> = messages[1]["passage_ids"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(cited, stored);

    // And directly in MongoDB.
    let store = ctx.store();
    let id: reposmith::ObjectId = session_id.parse().unwrap();
    let session = store
        .repo::<ChatSession>()
        .unwrap()
        .get(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((session.turns, session.owner.as_str()), (4, "anonymous"));
    let stored = store
        .repo::<ChatMessage>()
        .unwrap()
        .count(ChatMessage::SESSION_ID.eq(id))
        .await
        .unwrap();
    assert_eq!(stored, 4);
}

/// The query's embedding is cached in process: the same text again (in any
/// mode, a later page, a question) does not call the model; another text
/// does; the cache holds no more than its bound.
#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn a_repeated_query_is_embedded_once(ctx: TestContext) {
    let embedder = Arc::new(CountingEmbedder::new());
    let config = reposmith_example_rag::config::Config {
        query_cache_entries: 4,
        ..support::config(&ctx)
    };
    let service = support::start_with_embedder(&ctx, config, embedder.clone()).await;
    let reply = service.post_json("/v1/documents", &document(2)).await;
    assert_eq!(reply.status, 202, "{}", reply.json());
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    service.wait_ready(&id, Duration::from_secs(60)).await;

    let query = "where does the badger sleep";
    let first = search(&service, json!({"query": query, "mode": "vector", "k": 5})).await;
    assert_eq!(embedder.calls_for(query), 1);
    let again = search(&service, json!({"query": query, "mode": "vector", "k": 5})).await;
    assert_eq!(first["results"], again["results"]);
    search(&service, json!({"query": query, "mode": "hybrid", "k": 5})).await;
    let cursor = first["next_cursor"].clone();
    assert!(cursor.is_string(), "{first}");
    let body = json!({"query": query, "mode": "vector", "k": 5, "cursor": cursor});
    search(&service, body).await;
    let reply = service
        .post_json("/v1/ask", &json!({"question": query}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    assert_eq!(
        embedder.calls_for(query),
        1,
        "the model ran again for {query:?}"
    );

    // The key is the text as embedded (trimmed): another text embeds.
    let padded = format!("  {query}  ");
    search(&service, json!({"query": padded, "mode": "vector"})).await;
    assert_eq!(embedder.calls_for(query), 1);
    let other = "where does the badger hunt";
    search(&service, json!({"query": other, "mode": "vector"})).await;
    assert_eq!(embedder.calls_for(other), 1);

    for i in 0..20 {
        let text = format!("badger query {i}");
        search(&service, json!({"query": text, "mode": "hybrid"})).await;
        assert_eq!(embedder.calls_for(&text), 1);
    }
    let cached = service.state.queries.len();
    assert!((1..=4).contains(&cached), "{cached} query vectors cached");
    service.stop().await;
}
