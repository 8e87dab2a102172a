//! Ingest's unit of work: the document and its chunking job commit
//! together; a unit rolled back after recording its job enqueues nothing;
//! a job the queue gives up on fails its document.

use std::sync::Arc;
use std::time::Duration;

use reposmith::prelude::*;
use reposmith::queue::{Job, Queue, QueueOptions};
use reposmith::testing::TestContext;
use reposmith_example_rag::domain::{Chunk, Document};
use reposmith_example_rag::jobs::{ChunkDocument, EmbedChunks};
use serde_json::json;
use uuid::Uuid;

use super::support::{self, CountingEmbedder, outbox_rows};

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn a_rolled_back_ingest_enqueues_nothing(ctx: TestContext) {
    let service = support::start(&ctx).await;
    let text = "Alpha paragraph one.\n\nAlpha paragraph two.";
    let body = json!({"title": "Alpha", "source": "tests", "text": text});
    let reply = service.post_json("/v1/documents", &body).await;
    assert_eq!(reply.status, 202, "{}", reply.json());
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    service.wait_ready(&id, Duration::from_secs(30)).await;

    // The same text again: the unit records the job, the insert is refused
    // as a duplicate, the unit rolls back.
    let again = json!({"title": "Alpha again", "source": "elsewhere", "text": text});
    let reply = service.post_json("/v1/documents", &again).await;
    assert_eq!(reply.status, 409, "{}", reply.json());
    assert_eq!(reply.error_code(), "duplicate_document");
    assert_eq!(reply.json()["error"]["document_id"], id.as_str());
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id)
    );

    let store = ctx.store();
    assert_eq!(
        store
            .repo::<Document>()
            .unwrap()
            .count(Filter::all())
            .await
            .unwrap(),
        1
    );
    assert_eq!(outbox_rows(&ctx, ChunkDocument::QUEUE).await, 1);
    assert_eq!(outbox_rows(&ctx, EmbedChunks::QUEUE).await, 1);
    // Nothing more reaches the queue, however long the relay runs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let options = QueueOptions::default().prefix(ctx.key_prefix());
    let redis = store.redis().unwrap();
    let stats = Queue::<ChunkDocument>::with_options(redis, options)
        .unwrap()
        .stats()
        .await
        .unwrap();
    assert_eq!(stats.enqueued, 1, "{stats:?}");
    // Two short paragraphs make one passage.
    assert_eq!(
        store
            .repo::<Chunk>()
            .unwrap()
            .count(Filter::all())
            .await
            .unwrap(),
        1
    );
    service.stop().await;
}

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn a_unit_dropped_before_commit_leaves_no_job(ctx: TestContext) {
    // The library's half of the promise, on this service's job and table.
    let store = ctx.store();
    {
        let unit = store.begin::<Document>().await.unwrap();
        unit.enqueue(&ChunkDocument {
            document_id: Uuid::now_v7(),
        })
        .unwrap();
        unit.rollback().await.unwrap();
    }
    support::assert_nothing_stored(&ctx).await;
}

/// An `EmbedChunks` as an older (or broken) producer wrote it: its
/// `chunk_ids` are not a list, so the worker cannot read it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct UnreadableEmbed {
    document_id: Uuid,
    chunk_ids: String,
}

impl Job for UnreadableEmbed {
    const QUEUE: &'static str = EmbedChunks::QUEUE;
}

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn a_dead_lettered_job_fails_its_document(ctx: TestContext) {
    let embedder = Arc::new(CountingEmbedder::new());
    let config = support::config(&ctx);
    let service = support::start_with_embedder(&ctx, config, embedder.clone()).await;

    // Every attempt of its embedding job fails: after the last one (5,
    // with up to 15 s of backoff) the job is dead and the document failed.
    let text = format!("A {} pill no model can swallow.", CountingEmbedder::POISON);
    let body = json!({"title": "Poison", "source": "tests", "text": text});
    let reply = service.post_json("/v1/documents", &body).await;
    assert_eq!(reply.status, 202, "{}", reply.json());
    let poisoned = reply.json()["id"].as_str().unwrap().to_owned();
    let status = service
        .wait_status(&poisoned, "failed", Duration::from_secs(90))
        .await;
    let failure = status["failure"].as_str().unwrap();
    assert!(failure.contains("rag-embed"), "{failure}");
    assert!(failure.contains("5 attempt"), "{failure}");
    assert!(failure.contains("chokes on poison"), "{failure}");
    assert_eq!(embedder.calls_for(&text), 5);
    assert_eq!(status["chunks"]["embedded"], 0, "{status}");

    // A job whose payload no longer deserializes dies at once.
    let body = json!({"title": "Fine", "source": "tests", "text": "A harmless text."});
    let reply = service.post_json("/v1/documents", &body).await;
    let fine = reply.json()["id"].as_str().unwrap().to_owned();
    service.wait_ready(&fine, Duration::from_secs(30)).await;
    let options = QueueOptions::default().prefix(ctx.key_prefix());
    let queue =
        Queue::<UnreadableEmbed>::with_options(ctx.store().redis().unwrap(), options).unwrap();
    let broken = UnreadableEmbed {
        document_id: fine.parse().unwrap(),
        chunk_ids: "not a list".to_owned(),
    };
    queue.enqueue(&broken).await.unwrap();
    let status = service
        .wait_status(&fine, "failed", Duration::from_secs(30))
        .await;
    let failure = status["failure"].as_str().unwrap();
    assert!(failure.contains("does not deserialize"), "{failure}");
    assert!(failure.contains("1 attempt"), "{failure}");
    assert_eq!(queue.stats().await.unwrap().dead, 2);

    // Stored, not just shown: the row says failed, with the reason.
    let docs = ctx.store().repo::<Document>().unwrap();
    let stored = docs.get(&poisoned.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(
        stored.status,
        reposmith_example_rag::domain::DocumentStatus::Failed
    );
    assert!(stored.failure.unwrap().contains("chokes on poison"));
    service.stop().await;
}
