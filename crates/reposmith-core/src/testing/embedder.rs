//! [`TestEmbedder`]: a deterministic stand-in for a text embedding model.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::embed::{EmbedError, Embedder};
use crate::repository::BoxFuture;
use crate::{Error, Result};

/// The most dimensions a [`TestEmbedder`] gives: pgvector's limit for a
/// stored `vector` (HNSW indexes stop at 2,000).
pub const MAX_TEST_DIMS: usize = 16_000;

/// Weight of a whole word; each of its character trigrams weighs
/// [`TRIGRAM_WEIGHT`], so a misspelt word still shares most of its mass.
const WORD_WEIGHT: f64 = 1.0;
/// Weight of one character trigram of a word.
const TRIGRAM_WEIGHT: f64 = 0.5;

/// A deterministic [`Embedder`] for tests: no model, no download, no network.
///
/// # The property
///
/// A text's vector is a pure function of the text and `dims`, bit for bit
/// the same on every platform and run: the text is lower-cased and split
/// into words (runs of alphanumeric characters); each word contributes a
/// *word feature* (weight 1) and the character trigrams of `^word$`
/// (weight 0.5 each, so `cat` gives `^ca`, `cat`, `at$`). Every feature is
/// hashed with 64-bit FNV-1a into one of `dims` buckets with a sign taken
/// from the hash (signed feature hashing), and the sum is scaled to unit
/// length (L2). A text without any word maps to one fixed unit vector.
///
/// Consequences tests can rely on:
/// - the same text always gives the same vector; case and punctuation do
///   not matter (`"Hello, World"` = `"hello world"`);
/// - cosine similarity follows shared words and trigrams: a text and a copy
///   with one word changed stay close (most features shared), texts sharing
///   no word or trigram are near orthogonal (only hash collisions, of the
///   order of `1/sqrt(dims)`); word order does not matter;
/// - every vector has length 1 (within `f32` rounding), so cosine,
///   inner-product and L2 rankings agree.
///
/// It is not a language model: synonyms are unrelated to it.
///
/// ```
/// use reposmith_core::testing::TestEmbedder;
///
/// let model = TestEmbedder::new(64).unwrap();
/// let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
/// let text = model.vector("the quick brown fox jumps over the lazy dog");
/// let edited = model.vector("the quick brown cat jumps over the lazy dog");
/// let other = model.vector("postgres streams its write-ahead log to replicas");
/// assert_eq!(text, model.vector("The quick brown fox jumps over the lazy dog!"));
/// assert!(cos(&text, &edited) > cos(&text, &other));
/// ```
#[derive(Debug)]
pub struct TestEmbedder {
    dims: usize,
    max_batch: usize,
    calls: AtomicUsize,
    texts: AtomicUsize,
}

impl TestEmbedder {
    /// An embedder giving `dims`-dimensional vectors, 64 texts per call.
    /// [`Error::InvalidInput`] unless `dims` is between 1 and [`MAX_TEST_DIMS`].
    pub fn new(dims: usize) -> Result<TestEmbedder> {
        if !(1..=MAX_TEST_DIMS).contains(&dims) {
            return Err(Error::invalid(
                "TestEmbedder",
                "dims",
                format!("must be between 1 and {MAX_TEST_DIMS}, got {dims}"),
            ));
        }
        Ok(TestEmbedder {
            dims,
            max_batch: 64,
            calls: AtomicUsize::new(0),
            texts: AtomicUsize::new(0),
        })
    }

    /// The same embedder taking at most `max_batch` texts per call (at
    /// least 1), to exercise batching.
    pub fn with_max_batch(mut self, max_batch: usize) -> TestEmbedder {
        self.max_batch = max_batch.max(1);
        self
    }

    /// The dimension of its vectors.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// How many times [`Embedder::embed`] was called.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// How many texts [`Embedder::embed`] was given, over all calls.
    pub fn texts_embedded(&self) -> usize {
        self.texts.load(Ordering::Relaxed)
    }

    /// The vector of `text` (what `embed` returns for it), without counting a call.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut sums = vec![0f64; self.dims];
        let mut any = false;
        for word in words(text) {
            any = true;
            self.add(&mut sums, b'w', word.as_bytes(), WORD_WEIGHT);
            let marked: Vec<char> = std::iter::once('^')
                .chain(word.chars())
                .chain(std::iter::once('$'))
                .collect();
            for trigram in marked.windows(3) {
                let trigram: String = trigram.iter().collect();
                self.add(&mut sums, b't', trigram.as_bytes(), TRIGRAM_WEIGHT);
            }
        }
        if !any {
            self.add(&mut sums, b'e', b"", 1.0);
        }
        normalised(&sums)
    }

    /// Adds `weight` for the feature `kind`+`bytes` to its signed bucket.
    fn add(&self, sums: &mut [f64], kind: u8, bytes: &[u8], weight: f64) {
        let hash = fnv1a(std::iter::once(kind).chain(bytes.iter().copied()));
        // The high bit picks the sign, the rest the bucket: independent enough
        // for feature hashing, and fixed by the algorithm on every platform.
        let bucket = usize::try_from((hash & (u64::MAX >> 1)) % self.dims as u64).unwrap_or(0);
        let sign = if hash >> 63 == 1 { -1.0 } else { 1.0 };
        sums[bucket] += sign * weight;
    }
}

impl Embedder for TestEmbedder {
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, std::result::Result<Vec<Vec<f32>>, EmbedError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.texts.fetch_add(texts.len(), Ordering::Relaxed);
        let vectors = texts.iter().map(|t| self.vector(t)).collect();
        Box::pin(async move { Ok(vectors) })
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }
}

/// The lower-cased words of `text`: maximal runs of alphanumeric characters.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xCBF2_9CE4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// `sums` scaled to unit length; a zero sum (features cancelling out, which
/// a single feature cannot) becomes the first basis vector.
fn normalised(sums: &[f64]) -> Vec<f32> {
    let norm = sums.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        let mut unit = vec![0f32; sums.len()];
        unit[0] = 1.0;
        return unit;
    }
    sums.iter().map(|x| (x / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed corpus of unrelated sentences, and for each a copy with one word changed.
    const CORPUS: [(&str, &str); 8] = [
        (
            "the quick brown fox jumps over the lazy dog",
            "the quick brown cat jumps over the lazy dog",
        ),
        (
            "postgres streams its write ahead log to replicas",
            "postgres ships its write ahead log to replicas",
        ),
        (
            "a unit of work commits every change or none",
            "a unit of work commits every write or none",
        ),
        (
            "embeddings turn sentences into vectors of floats",
            "embeddings turn paragraphs into vectors of floats",
        ),
        (
            "rate limits protect the model gateway from bursts",
            "rate limits protect the model gateway from floods",
        ),
        (
            "mongodb keeps chat history in capped collections",
            "mongodb keeps chat history in large collections",
        ),
        (
            "redis caches hot rows for a few minutes",
            "redis caches hot rows for a few seconds",
        ),
        (
            "migrations are generated from the structs themselves",
            "migrations are derived from the structs themselves",
        ),
    ];

    fn cos(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn a_one_word_edit_stays_nearer_than_any_unrelated_text() {
        for dims in [32, 128, 384] {
            let model = TestEmbedder::new(dims).unwrap();
            for (i, (text, edited)) in CORPUS.iter().enumerate() {
                let (v, e) = (model.vector(text), model.vector(edited));
                let near = cos(&v, &e);
                for (j, (other, other_edited)) in CORPUS.iter().enumerate() {
                    if i == j {
                        continue;
                    }
                    for unrelated in [other, other_edited] {
                        let far = cos(&v, &model.vector(unrelated));
                        assert!(
                            near > far,
                            "dims {dims}: cos({text:?}, edit) = {near:.3} <= {far:.3} with {unrelated:?}"
                        );
                    }
                }
                assert!(near > 0.6, "dims {dims}: {text:?}: {near:.3}");
            }
        }
    }

    #[test]
    fn vectors_are_deterministic_unit_length_and_ignore_case_and_punctuation() {
        let model = TestEmbedder::new(96).unwrap();
        let v = model.vector("Hello, World!");
        assert_eq!(v, model.vector("hello world"));
        assert_eq!(v, TestEmbedder::new(96).unwrap().vector("HELLO   world"));
        assert_eq!(v.len(), 96);
        for text in ["hello world", "", "?!", "ünïcödé wörds ok"] {
            let length = cos(&model.vector(text), &model.vector(text)).sqrt();
            assert!((length - 1.0).abs() < 1e-6, "{text:?}: {length}");
        }
        assert_eq!(model.vector(""), model.vector(" ... "));
        // Pinned: the algorithm (FNV-1a, features, weights) is part of the
        // contract, so a change to it must show here.
        let bits: Vec<u32> = TestEmbedder::new(4)
            .unwrap()
            .vector("fox")
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(bits, PINNED_FOX);
    }

    /// The bits of `TestEmbedder::new(4).vector("fox")`: its four features
    /// land in buckets 0 (negative) and 3; checked against an independent
    /// implementation of the documented algorithm.
    const PINNED_FOX: [u32; 4] = [3_202_677_038, 0, 0, 1_063_581_998];

    #[test]
    fn dims_are_bounded_and_calls_counted() {
        assert!(TestEmbedder::new(0).is_err());
        assert!(TestEmbedder::new(MAX_TEST_DIMS + 1).is_err());
        let model = TestEmbedder::new(8).unwrap().with_max_batch(0);
        assert_eq!(model.max_batch(), 1);
        let texts = vec!["a".to_owned(), "b c".to_owned()];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let vectors = runtime.block_on(model.embed(&texts)).unwrap();
        assert_eq!(vectors, vec![model.vector("a"), model.vector("b c")]);
        assert_eq!((model.calls(), model.texts_embedded()), (1, 2));
    }
}
