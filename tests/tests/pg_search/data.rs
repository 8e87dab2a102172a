//! A seeded, clustered vector data set and exact neighbours computed in Rust.

/// `n` vectors around `clusters` random centres, reproducible from `seed`.
pub(crate) struct Clustered {
    pub(crate) vectors: Vec<Vec<f32>>,
    centres: Vec<Vec<f32>>,
}

/// SplitMix64: a tiny, well-distributed generator, so the data set needs no crate.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

impl Clustered {
    pub(crate) fn generate(n: usize, dims: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..dims).map(|_| rng.unit()).collect())
            .collect();
        let vectors = (0..n)
            .map(|_| {
                let centre = &centres[rng.below(clusters)];
                centre.iter().map(|c| c + 0.25 * rng.unit()).collect()
            })
            .collect();
        Clustered { vectors, centres }
    }

    /// A query near cluster `i`'s centre, distinct from every stored vector.
    pub(crate) fn query(&self, i: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let centre = &self.centres[i % self.centres.len()];
        centre.iter().map(|c| c + 0.25 * rng.unit()).collect()
    }

    /// Positions of the `k` nearest vectors (L2) among those `keep` accepts.
    pub(crate) fn exact(
        &self,
        query: &[f32],
        k: usize,
        keep: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(i, v)| (l2(query, v), i))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, i)| i).collect()
    }
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>()
}

/// `1 - cos(a, b)`, as pgvector's `<=>`.
pub(crate) fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (norm(a) * norm(b))
}

/// Share of `exact` found among `found`.
pub(crate) fn recall(exact: &[usize], found: impl Iterator<Item = usize>) -> f64 {
    let found: std::collections::HashSet<usize> = found.collect();
    exact.iter().filter(|i| found.contains(i)).count() as f64 / exact.len() as f64
}
