//! A stand-in for an embedding model, so the demo runs offline.
//!
//! A real service implements [`Embedder`] over its model: an HTTP call to an
//! embeddings API, or a local ONNX model. This one hashes words into 64
//! buckets ("feature hashing") and normalises the result: texts sharing
//! words land close together, which is enough to show search working.

use reposmith::{EmbedError, Embedder};

/// Dimensions of [`HashingEmbedder`]'s vectors, matching `Chunk::embedding`.
pub const DIMS: usize = 64;

/// Bag-of-words feature hashing; deterministic and offline.
#[derive(Debug, Default, Clone, Copy)]
pub struct HashingEmbedder;

impl HashingEmbedder {
    /// The vector of one text.
    pub fn vector(text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; DIMS];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() > 2)
        {
            // FNV-1a: stable across runs and platforms, unlike std's hasher.
            let hash = word
                .to_lowercase()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
            v[(hash % DIMS as u64) as usize] += 1.0;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            v[0] = 1.0; // cosine has no direction for a zero vector
        }
        v
    }
}

impl Embedder for HashingEmbedder {
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> reposmith::BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move { Ok(texts.iter().map(|t| Self::vector(t)).collect()) })
    }
}
