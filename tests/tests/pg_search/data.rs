//! A seeded, clustered vector data set (the generator of
//! `reposmith_core::testing`, the one the vector fixtures and the
//! benchmarks draw from) and exact neighbours computed in Rust, among the
//! rows a filter keeps.

use reposmith::Distance;
use reposmith_core::testing::{Clusters, SplitMix, distance};

/// `n` vectors around `clusters` random centres, reproducible from `seed`.
pub(crate) struct Clustered {
    pub(crate) vectors: Vec<Vec<f32>>,
    clusters: Clusters,
}

impl Clustered {
    pub(crate) fn generate(n: usize, dims: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = SplitMix::new(seed);
        let clusters = Clusters::new(dims, clusters, &mut rng);
        let vectors = (0..n).map(|_| clusters.point(&mut rng)).collect();
        Clustered { vectors, clusters }
    }

    /// A query near cluster `i`'s centre, distinct from every stored vector.
    pub(crate) fn query(&self, i: usize, seed: u64) -> Vec<f32> {
        self.clusters.query(i, seed)
    }

    /// Positions of the `k` nearest vectors (L2) among those `keep` accepts.
    pub(crate) fn exact(
        &self,
        query: &[f32],
        k: usize,
        keep: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut scored: Vec<(f64, usize)> = self
            .vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(i, v)| (distance(Distance::L2, query, v), i))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, i)| i).collect()
    }
}

/// `1 - cos(a, b)`, as pgvector's `<=>`.
pub(crate) fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    distance(Distance::Cosine, a, b)
}

/// Share of `exact` found among `found`.
pub(crate) fn recall(exact: &[usize], found: impl Iterator<Item = usize>) -> f64 {
    let found: std::collections::HashSet<usize> = found.collect();
    exact.iter().filter(|i| found.contains(i)).count() as f64 / exact.len() as f64
}
