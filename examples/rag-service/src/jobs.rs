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
//!
//! A job the queue gives up on (out of attempts, failed fatally, or a
//! payload that no longer deserializes) lands in its queue's dead-letter
//! set, where reposmith keeps it for replay. [`watch_dead_letters`] reads
//! those sets and marks the job's document `Failed` with the reason, so
//! `GET /v1/documents/{id}` says `failed` instead of `embedding` forever.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use reposmith::outbox::{QueueDestination, Receipt, Relay, RelayHandle};
use reposmith::queue::{
    DeadLetter, Job, JobContext, JobError, Queue, QueueOptions, Worker, WorkerHandle,
};
use reposmith::{BoxFuture, Embedder, PgBackend, PgUnitOfWork, Repository, Store, Vector};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
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

/// How often the dead-letter sets are checked: a failed document shows
/// `failed` within about this long.
pub const DEAD_LETTER_POLL: Duration = Duration::from_secs(1);
/// Dead letters read per page, newest first.
const DEAD_LETTER_PAGE: usize = 32;
/// The most dead letters one check reads per queue.
const DEAD_LETTER_SCAN: usize = 1_000;
/// Dead letters remembered as handled, per queue (the oldest forgotten).
const DEAD_LETTERS_REMEMBERED: usize = 10_000;
/// The longest failure reason stored on a document, in characters.
const MAX_FAILURE_CHARS: usize = 1_000;

/// The dead letters of one queue already turned into failed documents.
struct Handled<J: Job> {
    queue: Queue<J>,
    /// The queue's lifetime dead-letter count at the last complete check:
    /// while it stands still there is nothing new to read.
    counted: Option<u64>,
    /// (job id, died at): a replayed job that dies again is new.
    seen: HashSet<(Uuid, i64)>,
    order: VecDeque<(Uuid, i64)>,
}

impl<J: Job> Handled<J> {
    fn new(queue: Queue<J>) -> Handled<J> {
        Handled {
            queue,
            counted: None,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn remember(&mut self, key: (Uuid, i64)) {
        if self.seen.insert(key) {
            self.order.push_back(key);
        }
        while self.order.len() > DEAD_LETTERS_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    /// Marks the documents of the dead letters that arrived since the last
    /// check. The set is read newest first, page by page, down to the
    /// first letter already handled; an error leaves the count where it
    /// was, so the next check reads again (marking is idempotent).
    async fn check(&mut self, pg: &PgBackend) -> reposmith::Result<()> {
        let count = self.queue.stats().await?.dead_lettered;
        if self.counted == Some(count) {
            return Ok(());
        }
        let dead = self.queue.dead_letters();
        let mut offset = 0;
        'pages: while offset < DEAD_LETTER_SCAN {
            let page = dead.list(offset, DEAD_LETTER_PAGE).await?;
            for letter in &page {
                let key = (letter.id, letter.died_at.timestamp_millis());
                if self.seen.contains(&key) {
                    break 'pages;
                }
                fail_document(pg, J::QUEUE, letter).await?;
                self.remember(key);
            }
            if page.len() < DEAD_LETTER_PAGE {
                break;
            }
            offset += page.len();
        }
        self.counted = Some(count);
        Ok(())
    }
}

/// Checks both queues' dead-letter sets every [`DEAD_LETTER_POLL`] until
/// `stop` turns true, marking the documents of dead jobs `Failed`.
pub async fn watch_dead_letters(
    pg: PgBackend,
    chunking: Queue<ChunkDocument>,
    embedding: Queue<EmbedChunks>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut chunking, mut embedding) = (Handled::new(chunking), Handled::new(embedding));
    loop {
        for (queue, checked) in [
            (ChunkDocument::QUEUE, chunking.check(&pg).await),
            (EmbedChunks::QUEUE, embedding.check(&pg).await),
        ] {
            if let Err(error) = checked {
                tracing::warn!(%error, queue, "dead letters not checked; trying again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(DEAD_LETTER_POLL) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// The `document_id` of a dead job's payload, read as plain JSON: a
/// payload that no longer deserializes as its job may still name it.
fn document_of(payload: &str) -> Option<Uuid> {
    let payload: serde_json::Value = serde_json::from_str(payload).ok()?;
    payload["document_id"].as_str()?.parse().ok()
}

/// Marks the dead job's document `Failed` with the reason, unless it is
/// gone or failed already; retried when a job's write raced it.
async fn fail_document(pg: &PgBackend, queue: &str, letter: &DeadLetter) -> reposmith::Result<()> {
    let Some(document_id) = document_of(&letter.payload) else {
        tracing::warn!(queue, job = %letter.id, "a dead job names no document");
        return Ok(());
    };
    let reason: String = format!(
        "the {queue} job gave up after {} attempt(s): {}",
        letter.attempts, letter.last_error
    )
    .chars()
    .take(MAX_FAILURE_CHARS)
    .collect();
    let docs = pg.repo::<Document>();
    let mut tries = 0;
    loop {
        let Some(mut doc) = docs.get(&document_id).await? else {
            return Ok(());
        };
        if doc.status == DocumentStatus::Failed {
            return Ok(());
        }
        doc.status = DocumentStatus::Failed;
        doc.failure = Some(reason.clone());
        tries += 1;
        match docs.update(&doc).await {
            Ok(_) => {
                tracing::warn!(document = %document_id, %reason, "document failed");
                return Ok(());
            }
            // A job wrote the document meanwhile: read it again, a few
            // times; past that the next check tries again.
            Err(reposmith::Error::StaleVersion { .. }) if tries < 3 => {}
            Err(error) => return Err(error),
        }
    }
}

/// The relay, the workers and the dead-letter watch of the pipeline,
/// running until [`Pipeline::shutdown`].
pub struct Pipeline {
    relay: RelayHandle,
    chunkers: WorkerHandle,
    embedders: WorkerHandle,
    stop_watch: watch::Sender<bool>,
    dead_letters: JoinHandle<()>,
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
        let (stop_watch, stopped) = watch::channel(false);
        let dead_letters = tokio::spawn(watch_dead_letters(
            pg.clone(),
            Queue::with_options(redis, options.clone())?,
            Queue::with_options(redis, options.clone())?,
            stopped,
        ));
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
            stop_watch,
            dead_letters,
        })
    }

    /// Stops taking jobs, lets running ones finish for up to `grace` (then
    /// hands them back to the queue), and stops the dead-letter watch and
    /// the relay.
    pub async fn shutdown(self, grace: Duration) -> reposmith::Result<()> {
        let _ = self.stop_watch.send(true);
        if let Err(error) = self.dead_letters.await {
            tracing::warn!(%error, "the dead-letter watch ended abnormally");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_payload_names_its_document_even_when_it_does_not_deserialize() {
        let id = Uuid::now_v7();
        let unreadable = format!(r#"{{"document_id": "{id}", "chunk_ids": "not a list"}}"#);
        assert!(serde_json::from_str::<EmbedChunks>(&unreadable).is_err());
        assert_eq!(document_of(&unreadable), Some(id));
        let chunking = serde_json::to_string(&ChunkDocument { document_id: id }).unwrap();
        assert_eq!(document_of(&chunking), Some(id));
        assert_eq!(document_of(r#"{"document_id": 7}"#), None);
        assert_eq!(document_of("not json"), None);
    }
}
