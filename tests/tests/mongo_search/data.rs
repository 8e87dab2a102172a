//! A seeded, clustered vector data set and exact distances computed in Rust,
//! in double precision and in the order the server sums them.

use reposmith_core::testing::Clusters;
/// The seeded generator of `reposmith_core::testing` (SplitMix64), shared
/// with the PostgreSQL search tests, the vector fixtures and the benchmarks.
pub(crate) use reposmith_core::testing::SplitMix as Rng;

/// `n` vectors around `clusters` random centres, reproducible from `seed`.
pub(crate) struct Clustered {
    pub(crate) vectors: Vec<Vec<f32>>,
    clusters: Clusters,
}

impl Clustered {
    pub(crate) fn generate(n: usize, dims: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let clusters = Clusters::new(dims, clusters, &mut rng);
        let vectors = (0..n).map(|_| clusters.point(&mut rng)).collect();
        Clustered { vectors, clusters }
    }

    /// A query near cluster `i`'s centre, distinct from every stored vector.
    pub(crate) fn query(&self, i: usize, seed: u64) -> Vec<f32> {
        self.clusters.query(i, seed)
    }

    /// `(distance, position)` of the `k` nearest vectors (L2) among those
    /// `keep` accepts, ties broken by position.
    pub(crate) fn exact(
        &self,
        query: &[f32],
        k: usize,
        keep: impl Fn(usize) -> bool,
    ) -> Vec<(f64, usize)> {
        let scored = self
            .vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(i, v)| (l2(query, v), i))
            .collect();
        nearest(scored, k)
    }
}

/// The `k` smallest `(distance, id)` pairs, ordered as the server orders hits.
pub(crate) fn nearest<I: Ord>(mut scored: Vec<(f64, I)>, k: usize) -> Vec<(f64, I)> {
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    scored
}

fn widen(v: &[f32]) -> impl Iterator<Item = f64> + '_ {
    v.iter().map(|x| f64::from(*x))
}

/// Euclidean distance.
pub(crate) fn l2(a: &[f32], b: &[f32]) -> f64 {
    widen(a)
        .zip(widen(b))
        .fold(0.0, |s, (x, y)| s + (x - y) * (x - y))
        .sqrt()
}

/// Manhattan distance.
pub(crate) fn l1(a: &[f32], b: &[f32]) -> f64 {
    widen(a)
        .zip(widen(b))
        .fold(0.0, |s, (x, y)| s + (x - y).abs())
}

/// Negative inner product, as pgvector's `<#>`.
pub(crate) fn negative_dot(a: &[f32], b: &[f32]) -> f64 {
    -widen(a).zip(widen(b)).fold(0.0, |s, (x, y)| s + x * y)
}

/// `1 - cos(a, b)`, `a` the stored vector and `b` the query.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = widen(a).zip(widen(b)).fold(0.0, |s, (x, y)| s + x * y);
    let nn = widen(a).fold(0.0, |s, x| s + x * x);
    let qn = widen(b).map(|x| x * x).sum::<f64>().sqrt();
    1.0 - dot / (nn.sqrt() * qn)
}

/// Number of differing bits.
pub(crate) fn hamming(a: &[bool], b: &[bool]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x != y).count() as f64
}

/// `1 - |a ∩ b| / |a ∪ b|`.
pub(crate) fn jaccard(a: &[bool], b: &[bool]) -> f64 {
    let both = a.iter().zip(b).filter(|(x, y)| **x && **y).count() as f64;
    let either = a.iter().zip(b).filter(|(x, y)| **x || **y).count() as f64;
    1.0 - both / either
}

/// True when `a` and `b` agree to 1e-6 relative (absolute near zero).
pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-6)
}
