//! The vector data set: seeded, clustered, reproducible (the generator of
//! `reposmith_core::testing`), and exact cosine neighbours computed here,
//! in Rust, to measure recall against (normalised once and summed in eight
//! lanes: 100k x 384 is too large for the fixtures' plain brute force).

/// The seeded generator and clustered points are the library's test aids
/// (`reposmith_core::testing`), so the benchmarks, the suite's vector tests
/// and `reposmith-test`'s fixtures draw the same data from the same seed.
pub(crate) use reposmith_core::testing::{Clusters as Clustered, SplitMix};

/// Stored vectors, normalised once, for exact cosine neighbours.
pub(crate) struct Exact {
    /// Unit-length copies, row-major, `dims` per row.
    unit: Vec<f32>,
    dims: usize,
}

impl Exact {
    /// Room for `rows` vectors of `dims`.
    pub(crate) fn with_capacity(rows: usize, dims: usize) -> Exact {
        let unit = Vec::with_capacity(rows * dims);
        Exact { unit, dims }
    }

    /// Appends unit-length copies of `vectors`, positions continuing.
    pub(crate) fn extend<'a>(&mut self, vectors: impl Iterator<Item = &'a [f32]>) {
        for v in vectors {
            let norm = dot(v, v).sqrt().max(f32::MIN_POSITIVE);
            self.unit.extend(v.iter().map(|x| x / norm));
        }
    }

    /// Positions of the `k` nearest rows to `query` by cosine distance
    /// (pgvector's `<=>`) among those `keep` accepts; ties by position.
    pub(crate) fn nearest(
        &self,
        query: &[f32],
        k: usize,
        keep: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let norm = dot(query, query).sqrt().max(f32::MIN_POSITIVE);
        let mut scored: Vec<(f32, usize)> = self
            .unit
            .chunks_exact(self.dims)
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(i, row)| (1.0 - dot(query, row) / norm, i))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        let by = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        scored.select_nth_unstable_by(k - 1, by);
        scored.truncate(k);
        scored.sort_unstable_by(by);
        scored.into_iter().map(|(_, i)| i).collect()
    }
}

/// A dot product in eight lanes, which the compiler vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Share of `exact` found among `found`.
pub(crate) fn recall(exact: &[usize], found: &[usize]) -> f64 {
    if exact.is_empty() {
        return 1.0;
    }
    let hits = exact.iter().filter(|i| found.contains(i)).count();
    hits as f64 / exact.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_is_by_cosine_and_honours_the_filter() {
        let rows: [&[f32]; 4] = [&[1.0, 0.0], &[0.0, 1.0], &[10.0, 1.0], &[1.0, 1.0]];
        let mut exact = Exact::with_capacity(4, 2);
        exact.extend(rows.into_iter());
        // Cosine ignores length: [10, 1] is closer to [1, 0] than [1, 1] is.
        assert_eq!(exact.nearest(&[2.0, 0.0], 3, |_| true), [0, 2, 3]);
        assert_eq!(exact.nearest(&[2.0, 0.0], 2, |i| i % 2 == 1), [3, 1]);
        assert!((recall(&[0, 2, 3], &[3, 0, 1]) - 2.0 / 3.0).abs() < 1e-12);
    }
}
