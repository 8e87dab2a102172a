//! [`LoadError`]: why the model could not be loaded, naming the file.

use std::path::PathBuf;

/// Why [`MiniLm::load`](super::MiniLm::load) failed. Every variant names the
/// file, so the fix (fetch again, or point `RAG_MODEL_DIR` elsewhere) is plain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A model file is not there.
    #[error("model file {} is missing: run `cargo xtask rag fetch` or set RAG_MODEL_DIR", path.display())]
    Missing {
        /// The file looked for.
        path: PathBuf,
    },
    /// A model file could not be read.
    #[error("cannot read model file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A model file was read but is not what the model needs.
    #[error("bad model file {}: {reason}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl LoadError {
    /// A [`LoadError::Bad`] for `path`.
    pub(crate) fn bad(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        LoadError::Bad {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}
