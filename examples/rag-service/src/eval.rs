//! Retrieval evaluation over the PostgreSQL manual (`rag-eval`): the tables
//! it loads, the metrics, the vector cache, and reciprocal rank fusion
//! recomputed in memory to tune its settings; [`fusion`] and [`explore`]
//! do the same for score-based (convex) fusion and compare the two.
//!
//! A query is a page title; a hit is relevant when it comes from that page
//! (see [`crate::corpus`]). Scores are hit@1, hit@10 and MRR@10 (the mean
//! over queries of 1/rank of the first relevant hit in the top 10, 0 when
//! there is none), with latency percentiles of the searches themselves
//! (query embedding excluded: it is the same for every method).

pub mod explore;
pub mod fusion;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reposmith::{Repository, Vector};

use crate::corpus::{Corpus, Fnv, Query};

/// A passage stored for the evaluation: searched through an HNSW index
/// (cosine) and a full-text index on its body.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "postgres", table = "eval_passages")]
pub struct EvalPassage {
    /// The passage's position in the corpus.
    #[repo(id(assigned))]
    pub id: i64,
    /// The page it comes from (file name): the relevance key.
    pub page: String,
    /// The page's title; not searched (the queries are titles).
    pub title: String,
    /// The passage: the full-text document.
    #[repo(full_text)]
    pub body: String,
    /// all-MiniLM-L6-v2's vector of the body.
    #[repo(vector(dims = 384, distance = "cosine", index = "hnsw"))]
    pub embedding: Vector,
}

/// The same rows without a vector index: its vector search is exact (a
/// sequential scan), the baseline the HNSW index is held to.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "postgres", table = "eval_passages_exact")]
pub struct EvalPassageExact {
    /// The passage's position in the corpus.
    #[repo(id(assigned))]
    pub id: i64,
    /// The page it comes from (file name).
    pub page: String,
    /// all-MiniLM-L6-v2's vector of the passage.
    #[repo(vector(dims = 384, distance = "cosine", index = "none"))]
    pub embedding: Vector,
}

/// Whether `query` is in the half the fusion settings are tuned on; the
/// other half is held out for reporting. Fixed by a hash of the page name.
pub fn in_tuning_half(query: &Query) -> bool {
    let mut hash = Fnv::default();
    hash.write(query.page.as_bytes());
    hash.finish() % 2 == 0
}

/// Where 1-based `rank` of the first relevant hit puts a query.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    /// Rank of the first relevant hit among the top 10, if any.
    pub rank: Option<usize>,
    /// How long the search took.
    pub latency: Duration,
}

impl Outcome {
    /// The outcome of hits whose pages are `pages`, best first, for `query`.
    pub fn of<'a>(
        query: &Query,
        pages: impl IntoIterator<Item = &'a str>,
        latency: Duration,
    ) -> Outcome {
        let rank = pages
            .into_iter()
            .take(10)
            .position(|p| p == query.page)
            .map(|i| i + 1);
        Outcome { rank, latency }
    }
}

/// hit@1, hit@10, MRR@10 and latency percentiles over some queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    /// Queries scored.
    pub queries: usize,
    /// Share with a relevant first hit.
    pub hit1: f64,
    /// Share with a relevant hit in the top 10.
    pub hit10: f64,
    /// Mean reciprocal rank, cut at 10.
    pub mrr10: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

impl Scores {
    /// The scores of `outcomes`.
    pub fn of(outcomes: &[Outcome]) -> Scores {
        let n = outcomes.len().max(1) as f64;
        let share = |f: &dyn Fn(&Outcome) -> f64| outcomes.iter().map(f).sum::<f64>() / n;
        let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
        latencies.sort();
        Scores {
            queries: outcomes.len(),
            hit1: share(&|o| f64::from(u8::from(o.rank == Some(1)))),
            hit10: share(&|o| f64::from(u8::from(o.rank.is_some()))),
            mrr10: share(&|o| o.rank.map_or(0.0, |r| 1.0 / r as f64)),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
        }
    }
}

/// The `p` quantile of sorted `values` (nearest rank); zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Reciprocal rank fusion settings, as the library's hybrid search takes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rrf {
    /// Weight of the full-text ranking (the vector ranking's is 1).
    pub text_weight: f64,
    /// The RRF constant.
    pub k: u32,
    /// Candidates each side contributes.
    pub candidates: usize,
}

/// Fuses two rankings of ids (best first) the way the library's hybrid
/// search does: each side's first `candidates`, scored `1/(k + vector
/// rank) + text_weight/(k + text rank)`, best first, ties by id; the first
/// `top` ids.
pub fn fuse(vector: &[i64], text: &[i64], rrf: Rrf, top: usize) -> Vec<i64> {
    let mut scores: std::collections::HashMap<i64, f64> = std::collections::HashMap::new();
    let k = f64::from(rrf.k);
    for (weight, ranking) in [(1.0, vector), (rrf.text_weight, text)] {
        for (i, id) in ranking.iter().take(rrf.candidates).enumerate() {
            *scores.entry(*id).or_default() += weight / (k + (i + 1) as f64);
        }
    }
    let mut fused: Vec<(i64, f64)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused.into_iter().take(top).map(|(id, _)| id).collect()
}

/// The full-text query "any of the title's words": websearch syntax with
/// `or` between the words (a bare title asks for all of them). Characters
/// websearch syntax reads as operators (quotes, a leading `-`) are dropped.
pub fn any_word_query(title: &str) -> String {
    title
        .split_whitespace()
        .map(|w| w.trim_start_matches('-').replace('"', ""))
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Vectors cached on disk, keyed by everything they depend on.
#[derive(Debug, Clone)]
pub struct VectorCache {
    path: PathBuf,
}

impl VectorCache {
    /// The cache file in `dir` for the model in `model_dir` (its weights,
    /// tokenizer and config are hashed) and the passages of `corpus`.
    pub fn new(dir: &Path, model_dir: &Path, corpus: &Corpus) -> std::io::Result<VectorCache> {
        let mut hash = Fnv::default();
        for file in crate::embed::MODEL_FILES {
            hash.write(&std::fs::read(model_dir.join(file))?);
        }
        hash.write(&(crate::embed::MAX_TOKENS as u64).to_le_bytes());
        hash.write(&corpus.fingerprint().to_le_bytes());
        let path = dir.join(format!("passages-{:016x}.f32", hash.finish()));
        Ok(VectorCache { path })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached vectors, if the file is there and holds `rows` × `dims`.
    pub fn load(&self, rows: usize, dims: usize) -> Option<Vec<Vec<f32>>> {
        let bytes = std::fs::read(&self.path).ok()?;
        if bytes.len() != rows * dims * 4 {
            return None;
        }
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some(floats.chunks(dims).map(<[f32]>::to_vec).collect())
    }

    /// Writes `vectors` (through a temporary file, so a crash leaves none).
    pub fn store(&self, vectors: &[Vec<f32>]) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes: Vec<u8> = vectors
            .iter()
            .flatten()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let partial = self.path.with_extension("partial");
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, &self.path)
    }
}

/// Exact cosine neighbours by brute force over unit vectors: the ids of the
/// `top` passages with the largest dot product with `query`.
pub fn brute_force(passages: &[Vec<f32>], query: &[f32], top: usize) -> Vec<i64> {
    let mut scored: Vec<(i64, f32)> = passages
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v.iter().zip(query).map(|(a, b)| a * b).sum()))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.into_iter().take(top).map(|(id, _)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(page: &str) -> Query {
        Query {
            text: "A Title Here".into(),
            page: page.into(),
        }
    }

    #[test]
    fn scores_count_the_first_relevant_hit() {
        let q = query("a.html");
        let ms = Duration::from_millis;
        let outcomes = [
            Outcome::of(&q, ["a.html", "b.html"], ms(1)),
            Outcome::of(&q, ["b.html", "c.html", "a.html"], ms(2)),
            Outcome::of(&q, ["b.html"; 12].into_iter().chain(["a.html"]), ms(3)),
            Outcome::of(&q, [], ms(4)),
        ];
        assert_eq!(outcomes[1].rank, Some(3));
        assert_eq!(outcomes[2].rank, None, "rank 13 is past the cut");
        let s = Scores::of(&outcomes);
        assert_eq!(s.queries, 4);
        assert_eq!(s.hit1, 0.25);
        assert_eq!(s.hit10, 0.5);
        assert!((s.mrr10 - (1.0 + 1.0 / 3.0) / 4.0).abs() < 1e-12);
        assert_eq!(s.p50, ms(2));
        assert_eq!(s.p99, ms(4));
    }

    #[test]
    fn fusion_adds_weighted_reciprocal_ranks() {
        let rrf = Rrf {
            text_weight: 1.0,
            k: 60,
            candidates: 3,
        };
        // 7 is 2nd on both sides: 2/62 beats 1/61 alone.
        assert_eq!(fuse(&[1, 7, 3], &[9, 7, 4], rrf, 2), [7, 1]);
        // Only the first `candidates` of each side count.
        let one = Rrf {
            candidates: 1,
            ..rrf
        };
        assert_eq!(fuse(&[1, 7, 3], &[9, 7, 4], one, 5), [1, 9]);
        // A heavy text side wins.
        let text = Rrf {
            text_weight: 3.0,
            ..rrf
        };
        assert_eq!(fuse(&[1, 2], &[5, 6], text, 1), [5]);
    }

    #[test]
    fn any_word_queries_join_words_with_or() {
        assert_eq!(
            any_word_query("PL/pgSQL — SQL \"Procedural\" -Language"),
            "PL/pgSQL or SQL or Procedural or Language"
        );
    }

    #[test]
    fn the_split_is_fixed_and_about_half() {
        let tuning = (0..1000)
            .filter(|i| in_tuning_half(&query(&format!("page-{i}.html"))))
            .count();
        assert!((400..600).contains(&tuning), "{tuning}");
        assert_eq!(
            in_tuning_half(&query("x.html")),
            in_tuning_half(&query("x.html"))
        );
    }

    #[test]
    fn brute_force_ranks_by_dot_product() {
        let passages = vec![vec![1.0, 0.0], vec![0.6, 0.8], vec![0.0, 1.0]];
        assert_eq!(brute_force(&passages, &[0.0, 1.0], 2), [2, 1]);
    }

    #[test]
    fn the_cache_round_trips_and_checks_its_size() {
        let dir = std::env::temp_dir().join(format!("rag-cache-{}", std::process::id()));
        let cache = VectorCache {
            path: dir.join("v.f32"),
        };
        let vectors = vec![vec![0.5f32, -1.25], vec![3.0, 4.0]];
        cache.store(&vectors).unwrap();
        assert_eq!(cache.load(2, 2), Some(vectors));
        assert_eq!(cache.load(3, 2), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
