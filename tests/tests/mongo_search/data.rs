//! A seeded, clustered vector data set and exact distances computed in Rust,
//! in double precision and in the order the server sums them.

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

    pub(crate) fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// `n` vectors around `clusters` random centres, reproducible from `seed`.
pub(crate) struct Clustered {
    pub(crate) vectors: Vec<Vec<f32>>,
    centres: Vec<Vec<f32>>,
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
