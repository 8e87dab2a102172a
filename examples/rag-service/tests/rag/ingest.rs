//! Ingest's unit of work: the document and its chunking job commit
//! together; a unit rolled back after recording its job enqueues nothing.

use std::time::Duration;

use reposmith::prelude::*;
use reposmith::queue::{Queue, QueueOptions};
use reposmith::testing::TestContext;
use reposmith_example_rag::domain::{Chunk, Document};
use reposmith_example_rag::jobs::{ChunkDocument, EmbedChunks};
use serde_json::json;

use super::support;

/// Outbox rows recorded for `queue`, delivered or not.
pub(crate) async fn outbox_rows(ctx: &TestContext, queue: &str) -> i64 {
    let pg = ctx.store().postgres().unwrap();
    reposmith::postgres::sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM reposmith_outbox WHERE destination = $1",
    )
    .bind(format!("queue:{queue}"))
    .fetch_one(pg.pool())
    .await
    .unwrap()
}

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
            document_id: uuid::Uuid::now_v7(),
        })
        .unwrap();
        unit.rollback().await.unwrap();
    }
    assert_eq!(outbox_rows(&ctx, ChunkDocument::QUEUE).await, 0);
}
