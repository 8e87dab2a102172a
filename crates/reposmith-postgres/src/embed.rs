//! Filling `#[repo(embed(from = ".."))]` vectors with the repository's
//! [`Embedder`] before rows are written, and embedding search text. The
//! filling is backend-neutral ([`reposmith_core::embed`]); this module gives
//! it the repository's embedder.

use std::sync::Arc;

use reposmith_core::embed::{fill_row as fill, missing_vectors};
use reposmith_core::{Embedder, Entity, Result, Value};

use crate::PgRepository;

pub(crate) use reposmith_core::embed::Fills;

impl<E: Entity> PgRepository<E> {
    /// This repository with `embedder` filling missing embeddings on insert,
    /// `insert_many`, upsert and update, and serving `search_<field>_by_text`.
    /// A present vector is never recomputed: to re-embed after editing the
    /// source text, set the vector to `None` (or empty) before `update`.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// This repository without an embedder: rows are written as given and a
    /// missing embedding stays missing, for code that embeds later (a
    /// background job that sets the vector to `None` and updates through a
    /// repository that has the embedder).
    pub fn without_embedder(mut self) -> Self {
        self.embedder = None;
        self
    }
}

/// The embedded vectors missing from `rows` (values in schema order).
pub(crate) async fn fills<E: Entity>(repo: &PgRepository<E>, rows: &[Vec<Value>]) -> Result<Fills> {
    missing_vectors(E::SCHEMA, repo.embedder.as_deref(), rows).await
}

/// Embeds one row's missing vectors in place (insert, upsert).
pub(crate) async fn fill_row<E: Entity>(
    repo: &PgRepository<E>,
    values: &mut [Value],
) -> Result<()> {
    fill(E::SCHEMA, repo.embedder.as_deref(), values).await
}
