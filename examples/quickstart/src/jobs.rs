//! Background work: embedding a document's chunks off the request path.
//!
//! The write that stores a document records an [`EmbedDocument`] job in the
//! same unit of work (the transactional outbox), so the job exists exactly
//! when the document does, even if the process dies right after COMMIT. The
//! outbox relay moves it to a Redis queue; a worker runs [`embed_document`],
//! whose effects commit together with the job's receipt, so a second
//! delivery of the same job (the queue delivers at least once) changes
//! nothing.

use reposmith::outbox::Receipt;
use reposmith::queue::{Job, JobContext, JobError};
use reposmith::{BoxFuture, PgBackend, PgUnitOfWork, Repository};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Chunk;

/// Embed the chunks of one document that have no vector yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedDocument {
    /// The document whose chunks to embed.
    pub document_id: Uuid,
}

impl Job for EmbedDocument {
    const QUEUE: &'static str = "qs-embed";

    /// One embedding job per document, however often it is asked for.
    fn idempotency_key(&self) -> Option<String> {
        Some(format!("embed-{}", self.document_id))
    }
}

/// The worker's handler: embeds the document's unembedded chunks in a unit
/// of work that also records the job's receipt. Returns how many chunks it
/// embedded (0 when an earlier delivery already did the work).
pub async fn embed_document(
    pg: &PgBackend,
    ctx: &JobContext<EmbedDocument>,
) -> Result<usize, JobError> {
    let receipt = Receipt::for_job(ctx.queue(), ctx.id())?;
    let document_id = ctx.job().document_id;
    let embedded = pg.run_once(&receipt, embed_chunks(document_id)).await?;
    Ok(embedded.unwrap_or(0))
}

fn embed_chunks(
    document_id: Uuid,
) -> impl for<'u> FnOnce(&'u PgUnitOfWork) -> BoxFuture<'u, reposmith::Result<usize>> {
    move |unit| {
        Box::pin(async move {
            let chunks = unit.repo::<Chunk>();
            let pending = chunks
                .find(Chunk::DOCUMENT_ID.eq(document_id) & Chunk::EMBEDDING.is_null())
                .await?;
            for chunk in &pending {
                // The repository's embedder fills the missing vector on update.
                chunks.update(chunk).await?;
            }
            Ok(pending.len())
        })
    }
}
