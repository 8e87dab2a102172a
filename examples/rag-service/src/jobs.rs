//! The ingestion pipeline's background work, run by workers inside the
//! service process.
//!
//! Every job is born with the write that causes it, in the same unit of
//! work (reposmith's transactional outbox): `POST /v1/documents` stores the
//! document and records its [`ChunkDocument`] job in one transaction; the
//! chunking job stores the chunks and records their [`EmbedChunks`] jobs in
//! one transaction. A rollback leaves no job; a crash right after COMMIT
//! loses none. The outbox relay moves committed jobs to Redis queues, and
//! each handler commits its effects together with the job's receipt
//! (`run_once`), so a job delivered twice changes nothing the second time.

use std::sync::Arc;
use std::time::Duration;

use reposmith::outbox::{QueueDestination, Receipt, Relay, RelayHandle};
use reposmith::queue::{Job, JobContext, JobError, Queue, QueueOptions, Worker, WorkerHandle};
use reposmith::{BoxFuture, Embedder, PgBackend, PgUnitOfWork, Repository, Store, Vector};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chunker::Chunker;
use crate::domain::{Chunk, Document, DocumentStatus};

/// Chunks embedded per [`EmbedChunks`] job: one model call each.
pub const EMBED_BATCH: usize = 32;

/// Split a stored document into chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkDocument {
    /// The document to chunk.
    pub document_id: Uuid,
}

impl Job for ChunkDocument {
    const QUEUE: &'static str = "rag-chunk";

    /// One chunking job per document, however often it is recorded.
    fn idempotency_key(&self) -> Option<String> {
        Some(format!("chunk-{}", self.document_id))
    }
}

/// Embed some chunks of a document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedChunks {
    /// Their document.
    pub document_id: Uuid,
    /// At most [`EMBED_BATCH`] chunks.
    pub chunk_ids: Vec<Uuid>,
}

impl Job for EmbedChunks {
    const QUEUE: &'static str = "rag-embed";
}

/// The chunking job's handler: the document's chunks, unembedded, and their
/// embedding jobs, committed with the job's receipt. Returns the number of
/// chunks made (0 when an earlier delivery did the work or the document is
/// gone).
pub async fn chunk_document(
    pg: &PgBackend,
    chunker: Chunker,
    ctx: &JobContext<ChunkDocument>,
) -> Result<usize, JobError> {
    let receipt = Receipt::for_job(ctx.queue(), ctx.id())?;
    let made = pg
        .run_once(&receipt, split_into_chunks(ctx.job().document_id, chunker))
        .await?;
    Ok(made.unwrap_or(0))
}

fn split_into_chunks(
    document_id: Uuid,
    chunker: Chunker,
) -> impl for<'u> FnOnce(&'u PgUnitOfWork) -> BoxFuture<'u, reposmith::Result<usize>> {
    move |unit| {
        Box::pin(async move {
            let docs = unit.repo::<Document>();
            let Some(mut doc) = docs.get(&document_id).await? else {
                return Ok(0);
            };
            if doc.status != DocumentStatus::Received {
                return Ok(0);
            }
            let chunks: Vec<Chunk> = chunker
                .split(&doc.text)
                .into_iter()
                .enumerate()
                .map(|(ordinal, body)| Chunk {
                    id: Uuid::now_v7(),
                    document_id,
                    ordinal: ordinal as i32,
                    title: doc.title.clone(),
                    source: doc.source.clone(),
                    metadata: doc.metadata.clone(),
                    body,
                    embedding: None,
                })
                .collect();
            // Stored as they are: the embedding jobs fill the vectors.
            unit.repo::<Chunk>()
                .without_embedder()
                .insert_many(&chunks)
                .await?;
            for batch in chunks.chunks(EMBED_BATCH) {
                unit.enqueue(&EmbedChunks {
                    document_id,
                    chunk_ids: batch.iter().map(|c| c.id).collect(),
                })?;
            }
            doc.status = DocumentStatus::Chunked;
            doc.chunks_total = chunks.len() as i32;
            docs.update(&doc).await?;
            Ok(chunks.len())
        })
    }
}

/// The embedding job's handler: one model call for the job's chunks that
/// have no vector yet (outside any transaction, bounded by `timeout`), then
/// the vectors written with the job's receipt. Returns how many chunks it
/// embedded.
pub async fn embed_chunks(
    pg: &PgBackend,
    embedder: &dyn Embedder,
    timeout: Duration,
    ctx: &JobContext<EmbedChunks>,
) -> Result<usize, JobError> {
    let job = ctx.job();
    let pending = pg
        .repo::<Chunk>()
        .find(Chunk::ID.is_in(job.chunk_ids.iter().copied()) & Chunk::EMBEDDING.is_null())
        .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let texts: Vec<String> = pending.iter().map(|c| c.body.clone()).collect();
    let vectors = match tokio::time::timeout(timeout, embedder.embed(&texts)).await {
        Ok(Ok(vectors)) if vectors.len() == texts.len() => vectors,
        Ok(Ok(vectors)) => {
            return Err(JobError::fatal(format!(
                "the embedder returned {} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        Ok(Err(error)) => return Err(JobError::retry(format!("embedding failed: {error}"))),
        Err(_) => return Err(JobError::retry(format!("embedding took over {timeout:?}"))),
    };
    let embedded: Vec<Chunk> = pending
        .into_iter()
        .zip(vectors)
        .map(|(chunk, vector)| Chunk {
            embedding: Some(Vector::from(vector)),
            ..chunk
        })
        .collect();
    let receipt = Receipt::for_job(ctx.queue(), ctx.id())?;
    let written = pg.run_once(&receipt, write_vectors(embedded)).await?;
    Ok(written.unwrap_or(0))
}

fn write_vectors(
    chunks: Vec<Chunk>,
) -> impl for<'u> FnOnce(&'u PgUnitOfWork) -> BoxFuture<'u, reposmith::Result<usize>> {
    move |unit| {
        Box::pin(async move {
            let repo = unit.repo::<Chunk>();
            for chunk in &chunks {
                repo.update(chunk).await?;
            }
            Ok(chunks.len())
        })
    }
}

/// The relay and the workers of the pipeline, running until [`Pipeline::shutdown`].
pub struct Pipeline {
    relay: RelayHandle,
    chunkers: WorkerHandle,
    embedders: WorkerHandle,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts the outbox relay for the pipeline's two queues, one chunking
    /// worker and `embed_workers` embedding workers, on queues under
    /// `options`' key prefix.
    pub async fn start(
        store: &Store,
        embedder: Arc<dyn Embedder>,
        options: QueueOptions,
        embed_workers: usize,
        embed_timeout: Duration,
    ) -> reposmith::Result<Pipeline> {
        let (pg, redis) = (store.postgres()?.clone(), store.redis()?);
        let destination = || QueueDestination::with_options(redis, options.clone());
        let relay = Relay::new(&pg)
            .queue(ChunkDocument::QUEUE, destination())?
            .queue(EmbedChunks::QUEUE, destination())?
            .spawn();
        let chunk_pg = pg.clone();
        let chunkers = Worker::new(Queue::<ChunkDocument>::with_options(
            redis,
            options.clone(),
        )?)
        .concurrency(1)
        .run(move |ctx| {
            let pg = chunk_pg.clone();
            async move {
                let made = chunk_document(&pg, Chunker::default(), &ctx).await?;
                tracing::debug!(document = %ctx.job().document_id, chunks = made, "chunked");
                Ok(())
            }
        })
        .await?;
        let embedders = Worker::new(Queue::<EmbedChunks>::with_options(redis, options)?)
            .concurrency(embed_workers.max(1))
            .run(move |ctx| {
                let (pg, embedder) = (pg.clone(), embedder.clone());
                async move {
                    let n = embed_chunks(&pg, embedder.as_ref(), embed_timeout, &ctx).await?;
                    tracing::debug!(document = %ctx.job().document_id, chunks = n, "embedded");
                    Ok(())
                }
            })
            .await?;
        Ok(Pipeline {
            relay,
            chunkers,
            embedders,
        })
    }

    /// Stops taking jobs, lets running ones finish for up to `grace` (then
    /// hands them back to the queue), and stops the relay.
    pub async fn shutdown(self, grace: Duration) -> reposmith::Result<()> {
        let (chunkers, embedders) = tokio::join!(
            self.chunkers.shutdown(grace),
            self.embedders.shutdown(grace)
        );
        tracing::info!(
            chunked = chunkers.counts.completed,
            embedded = embedders.counts.completed,
            "workers stopped"
        );
        self.relay.shutdown().await
    }
}
