//! [`Embedder`]: the application's text-to-vector model, as reposmith sees it.
//!
//! reposmith makes no network calls of its own. An application implements
//! this trait over its model (an HTTP API, a local ONNX model) and gives it to
//! a repository, which then fills missing `#[repo(embed(from = "..."))]`
//! vectors on insert, in batches, and offers `search_<field>_by_text`.

use crate::repository::BoxFuture;

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
