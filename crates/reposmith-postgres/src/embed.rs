//! Filling `#[repo(embed(from = ".."))]` vectors with the repository's
//! [`Embedder`] before rows are written, and embedding search text.
//!
//! A vector is *missing* when it is `None` or has no elements. Missing
//! vectors of a batch are embedded together, `Embedder::max_batch` texts per
//! call; the embedder's answer is checked (one vector per text, the column's
//! dimension, finite) before any row is sent, so a bad model output is an
//! error naming the field and nothing is written.

use std::collections::HashMap;
use std::sync::Arc;

use reposmith_core::{ColumnDef, Embedder, Entity, Error, Result, Value, VectorKind};

use crate::PgRepository;

/// Embedded vectors to put into rows, by row position then column position.
#[derive(Default)]
pub(crate) struct Fills(HashMap<usize, Vec<(usize, Value)>>);

impl Fills {
    /// Puts row `row`'s embedded vectors into its values.
    pub(crate) fn apply(&self, row: usize, values: &mut [Value]) {
        for (column, value) in self.0.get(&row).into_iter().flatten() {
            values[*column] = value.clone();
        }
    }
}

impl<E: Entity> PgRepository<E> {
    /// This repository with `embedder` filling missing embeddings on insert,
    /// `insert_many`, upsert and update, and serving `search_<field>_by_text`.
    /// A present vector is never recomputed: to re-embed after editing the
    /// source text, set the vector to `None` (or empty) before `update`.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }
}

fn embed_columns(
    columns: &'static [ColumnDef],
) -> impl Iterator<Item = (usize, &'static ColumnDef)> {
    columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.embed_from.is_some())
}

fn is_missing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Vector(v) => v.as_slice().is_empty(),
        Value::HalfVector(v) => v.as_slice().is_empty(),
        _ => false,
    }
}

/// The embedded vectors missing from `rows` (values in schema order).
pub(crate) async fn fills<E: Entity>(repo: &PgRepository<E>, rows: &[Vec<Value>]) -> Result<Fills> {
    let schema = E::SCHEMA;
    let mut fills = Fills::default();
    let Some(embedder) = &repo.embedder else {
        return Ok(fills);
    };
    for (column, def) in embed_columns(schema.columns) {
        let source = def
            .embed_from
            .and_then(|name| schema.columns.iter().position(|c| c.name == name));
        let Some(source) = source else { continue };
        let wanted: Vec<(usize, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| is_missing(&row[column]))
            .filter_map(|(i, row)| match &row[source] {
                Value::Text(text) if !text.is_empty() => Some((i, text.clone())),
                _ => None,
            })
            .collect();
        for batch in wanted.chunks(embedder.max_batch().max(1)) {
            let texts: Vec<String> = batch.iter().map(|(_, t)| t.clone()).collect();
            let vectors = embed(embedder.as_ref(), def, schema.entity, &texts).await?;
            for ((row, _), vector) in batch.iter().zip(vectors) {
                fills.0.entry(*row).or_default().push((column, vector));
            }
        }
    }
    Ok(fills)
}

/// Embeds one row's missing vectors in place (insert, upsert).
pub(crate) async fn fill_row<E: Entity>(
    repo: &PgRepository<E>,
    values: &mut [Value],
) -> Result<()> {
    if repo.embedder.is_none() || embed_columns(E::SCHEMA.columns).next().is_none() {
        return Ok(());
    }
    let rows = vec![values.to_vec()];
    fills(repo, &rows).await?.apply(0, values);
    Ok(())
}

/// The embedding of `text` for the vector column at `column`.
pub(crate) async fn embed_one<E: Entity>(
    repo: &PgRepository<E>,
    column: usize,
    text: &str,
) -> Result<Value> {
    let schema = E::SCHEMA;
    let def = schema
        .columns
        .get(column)
        .ok_or_else(|| Error::invalid(schema.entity, "column", "not a column of this entity"))?;
    let embedder = repo.embedder.as_ref().ok_or_else(|| {
        Error::invalid(
            schema.entity,
            def.field,
            "searching by text needs an embedder: build the repository with .with_embedder(..)",
        )
    })?;
    if text.contains('\0') {
        return Err(Error::invalid(
            schema.entity,
            "text",
            "contains a NUL character (\\u0000)",
        ));
    }
    let texts = [text.to_owned()];
    let mut vectors = embed(embedder.as_ref(), def, schema.entity, &texts).await?;
    Ok(vectors.remove(0))
}

/// One call to the embedder, its answer checked and converted to the column's kind.
async fn embed(
    embedder: &dyn Embedder,
    def: &'static ColumnDef,
    entity: &'static str,
    texts: &[String],
) -> Result<Vec<Value>> {
    let failed = |reason: String| Error::Embedding {
        entity,
        field: def.field,
        reason,
    };
    let vectors = embedder
        .embed(texts)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if vectors.len() != texts.len() {
        return Err(failed(format!(
            "returned {} vectors for {} texts",
            vectors.len(),
            texts.len()
        )));
    }
    let kind = def.vector.map(|v| v.kind);
    let values: Vec<Value> = vectors
        .into_iter()
        .map(|v| match kind {
            Some(VectorKind::Half) => Value::HalfVector(pgvector::HalfVector::from_f32_slice(&v)),
            _ => Value::Vector(pgvector::Vector::from(v)),
        })
        .collect();
    // The same checks as any written vector, reported as the embedder's failure.
    if let Some(spec) = &def.vector {
        for value in &values {
            if let Err(reason) = reposmith_core::vector::check_value(spec, value) {
                return Err(failed(format!("returned a vector that {reason}")));
            }
        }
    }
    Ok(values)
}
