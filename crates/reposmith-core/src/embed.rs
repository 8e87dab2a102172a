//! [`Embedder`]: the application's text-to-vector model, as reposmith sees it.
//!
//! reposmith makes no network calls of its own. An application implements
//! this trait over its model (an HTTP API, a local ONNX model) and gives it to
//! a repository, which then fills missing `#[repo(embed(from = "..."))]`
//! vectors on insert, in batches, and offers `search_<field>_by_text`.
//!
//! The filling itself ([`missing_vectors`], [`fill_row`], [`embed_query`])
//! is backend-neutral and lives here, so both backends embed the same way.
//! A vector is *missing* when it is `None` or has no elements. Missing
//! vectors of a batch are embedded together, `Embedder::max_batch` texts per
//! call; the embedder's answer is checked (one vector per text, the column's
//! dimension, finite) before any row is sent.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::entity::Entity;
use crate::repository::BoxFuture;
use crate::schema::{ColumnDef, EntitySchema, VectorKind};
use crate::search::{SearchKind, SearchQuery};
use crate::value::Value;
use crate::{Error, Result};

/// Why an embedder could not embed a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EmbedError(pub String);

impl EmbedError {
    /// An error with this explanation.
    pub fn new(reason: impl Into<String>) -> Self {
        EmbedError(reason.into())
    }
}

/// Turns texts into vectors, many per call.
///
/// ```
/// use reposmith_core::embed::{EmbedError, Embedder};
/// use reposmith_core::repository::BoxFuture;
///
/// /// A toy embedder: letter counts (a real one calls a model).
/// struct LetterCounts;
///
/// impl Embedder for LetterCounts {
///     fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
///         Box::pin(async move {
///             Ok(texts
///                 .iter()
///                 .map(|t| {
///                     let mut v = vec![0.0f32; 26];
///                     for b in t.bytes().filter(u8::is_ascii_lowercase) {
///                         v[usize::from(b - b'a')] += 1.0;
///                     }
///                     v
///                 })
///                 .collect())
///         })
///     }
/// }
/// ```
pub trait Embedder: Send + Sync + 'static {
    /// One vector per text, in the same order. The repository checks the
    /// count and every vector's dimension, so a model returning the wrong
    /// shape is an error naming the field, never a stored row.
    fn embed<'a>(&'a self, texts: &'a [String])
    -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;

    /// Most texts per call; the repository splits larger inserts.
    fn max_batch(&self) -> usize {
        64
    }
}

/// Vectors an embedder computed for rows about to be written, by row
/// position then column position. Backends compute them with
/// [`missing_vectors`] before opening a transaction (a model call must not
/// hold one open) and put them into each row with [`Fills::apply`].
#[derive(Debug, Default)]
pub struct Fills(HashMap<usize, Vec<(usize, Value)>>);

impl Fills {
    /// Puts row `row`'s embedded vectors into its values.
    pub fn apply(&self, row: usize, values: &mut [Value]) {
        for (column, value) in self.0.get(&row).into_iter().flatten() {
            values[*column] = value.clone();
        }
    }

    /// True when nothing was embedded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `#[repo(embed(from = ".."))]` columns of `schema`.
pub fn embedded_columns(
    schema: &'static EntitySchema,
) -> impl Iterator<Item = (usize, &'static ColumnDef)> {
    schema
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.embed_from.is_some())
}

/// A vector is missing when it is `None` or has no elements: that is how an
/// application asks for it to be computed (or recomputed before an update).
fn is_missing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Vector(v) => v.as_slice().is_empty(),
        Value::HalfVector(v) => v.as_slice().is_empty(),
        _ => false,
    }
}

/// Embeds the vectors missing from `rows` (values in schema order) whose
/// source text is present, `Embedder::max_batch` texts per call. Every
/// answer is checked (one vector per text, the column's dimension, finite)
/// before anything is returned, so a bad model output is
/// [`Error::Embedding`] naming the field and no row is written. Without an
/// embedder nothing is filled.
pub async fn missing_vectors(
    schema: &'static EntitySchema,
    embedder: Option<&dyn Embedder>,
    rows: &[Vec<Value>],
) -> Result<Fills> {
    let mut fills = Fills::default();
    let Some(embedder) = embedder else {
        return Ok(fills);
    };
    for (column, def) in embedded_columns(schema) {
        let source = def
            .embed_from
            .and_then(|name| schema.columns.iter().position(|c| c.name == name));
        let Some(source) = source else { continue };
        let wanted: Vec<(usize, String)> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.get(column).is_some_and(is_missing))
            .filter_map(|(i, row)| match row.get(source) {
                Some(Value::Text(text)) if !text.is_empty() => Some((i, text.clone())),
                _ => None,
            })
            .collect();
        for batch in wanted.chunks(embedder.max_batch().max(1)) {
            let texts: Vec<String> = batch.iter().map(|(_, t)| t.clone()).collect();
            let vectors = embed_checked(embedder, def, schema.entity, &texts).await?;
            for ((row, _), vector) in batch.iter().zip(vectors) {
                fills.0.entry(*row).or_default().push((column, vector));
            }
        }
    }
    Ok(fills)
}

/// Embeds one row's missing vectors in place (insert, upsert, update).
pub async fn fill_row(
    schema: &'static EntitySchema,
    embedder: Option<&dyn Embedder>,
    values: &mut [Value],
) -> Result<()> {
    if embedder.is_none() || embedded_columns(schema).next().is_none() {
        return Ok(());
    }
    let rows = vec![values.to_vec()];
    missing_vectors(schema, embedder, &rows)
        .await?
        .apply(0, values);
    Ok(())
}

/// The embedding of search text `text` for the vector column at `column`.
/// Without an embedder this is [`Error::InvalidInput`] saying how to give
/// the repository one.
pub async fn embed_query(
    schema: &'static EntitySchema,
    embedder: Option<&dyn Embedder>,
    column: usize,
    text: &str,
) -> Result<Value> {
    let def = schema
        .columns
        .get(column)
        .ok_or_else(|| Error::invalid(schema.entity, "column", "not a column of this entity"))?;
    let embedder = embedder.ok_or_else(|| {
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
    let mut vectors = embed_checked(embedder, def, schema.entity, &texts).await?;
    Ok(vectors.remove(0))
}

/// One call to the embedder, its answer checked and converted to the column's kind.
async fn embed_checked(
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
            if let Err(reason) = crate::vector::check_value(spec, value) {
                return Err(failed(format!("returned a vector that {reason}")));
            }
        }
    }
    Ok(values)
}

/// The embedders a backend gives its repositories, one per entity type.
/// Cheap to clone; clones share the registry, so an embedder set on a
/// backend reaches repositories taken from its clones and units of work.
#[derive(Clone, Default)]
pub struct Embedders(Arc<RwLock<HashMap<TypeId, Arc<dyn Embedder>>>>);

impl Embedders {
    /// Gives entity `E`'s repositories `embedder` from now on.
    pub fn set<E: 'static>(&self, embedder: Arc<dyn Embedder>) {
        // A poisoned lock only means a writer panicked between two plain
        // map operations; the map itself is consistent.
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert(TypeId::of::<E>(), embedder);
    }

    /// The embedder set for entity `E`, if any.
    pub fn get<E: 'static>(&self) -> Option<Arc<dyn Embedder>> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(&TypeId::of::<E>()).cloned()
    }
}

impl std::fmt::Debug for Embedders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Embedders")
            .field("entities", &map.len())
            .finish()
    }
}

/// Replaces a by-text vector search (`search_<field>_by_text`) with a search
/// by the embedding of its text; other searches pass through unchanged.
/// Validate the query first, so bad arguments never cost a model call.
pub async fn embed_search<E: Entity>(
    embedder: Option<&dyn Embedder>,
    mut query: SearchQuery<E>,
) -> Result<SearchQuery<E>> {
    if let SearchKind::VectorFromText { column, text } = &query.kind {
        let column = *column;
        let vector = embed_query(E::SCHEMA, embedder, column, text).await?;
        query.kind = SearchKind::Vector { column, vector };
    }
    Ok(query)
}
