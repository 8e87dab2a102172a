//! [`VectorFixture`]: seeded clustered vectors with their exact nearest
//! neighbours precomputed by brute force, to check a vector search against.

use crate::schema::Distance;
use crate::testing::rng::{Clusters, SplitMix};
use crate::{Error, Result};

/// Mixed into the seed of the queries' generator, so queries are not the
/// data's first points.
const QUERY_SALT: u64 = 0x5155_4552_5953_4545;

/// What a [`VectorFixture`] holds: `n` points of `dims` dimensions around
/// `clusters` centres, drawn from `seed`, and `queries` query points with
/// their exact `k` nearest neighbours by `distance`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FixtureSpec {
    /// Points in the data set.
    pub n: usize,
    /// Dimensions of every point.
    pub dims: usize,
    /// Cluster centres the points are drawn around.
    pub clusters: usize,
    /// The seed of everything.
    pub seed: u64,
    /// Query points (default 10), each near a centre (round robin), none a data point.
    pub queries: usize,
    /// Neighbours precomputed per query (default 10).
    pub k: usize,
    /// The distance neighbours are ranked by (default cosine).
    pub distance: Distance,
}

impl FixtureSpec {
    /// `n` points of `dims` dimensions around `clusters` centres from
    /// `seed`; 10 queries, 10 neighbours each, by cosine distance.
    pub fn new(n: usize, dims: usize, clusters: usize, seed: u64) -> FixtureSpec {
        FixtureSpec {
            n,
            dims,
            clusters,
            seed,
            queries: 10,
            k: 10,
            distance: Distance::Cosine,
        }
    }

    /// Sets the number of queries.
    pub fn queries(mut self, queries: usize) -> FixtureSpec {
        self.queries = queries;
        self
    }

    /// Sets how many neighbours are precomputed per query.
    pub fn k(mut self, k: usize) -> FixtureSpec {
        self.k = k;
        self
    }

    /// Sets the distance neighbours are ranked by: cosine, L2, inner
    /// product or L1 (the `vector` distances).
    pub fn distance(mut self, distance: Distance) -> FixtureSpec {
        self.distance = distance;
        self
    }

    /// [`Error::InvalidInput`] naming the first setting that cannot make a fixture.
    fn check(&self) -> Result<()> {
        let fail = |field: &str, reason: String| Err(Error::invalid("FixtureSpec", field, reason));
        if self.n == 0 {
            return fail("n", "must be at least 1".into());
        }
        if !(1..=super::MAX_TEST_DIMS).contains(&self.dims) {
            let max = super::MAX_TEST_DIMS;
            return fail(
                "dims",
                format!("must be between 1 and {max}, got {}", self.dims),
            );
        }
        if self.clusters == 0 {
            return fail("clusters", "must be at least 1".into());
        }
        if !(1..=self.n).contains(&self.k) {
            let (k, n) = (self.k, self.n);
            return fail("k", format!("must be between 1 and n ({n}), got {k}"));
        }
        if !matches!(
            self.distance,
            Distance::Cosine | Distance::L2 | Distance::InnerProduct | Distance::L1
        ) {
            let reason = format!(
                "{:?} is not a distance between float vectors",
                self.distance
            );
            return fail("distance", reason);
        }
        Ok(())
    }
}

/// One exact neighbour of a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// Position of the point in [`VectorFixture::vectors`].
    pub position: usize,
    /// Its distance to the query, computed in `f64` as pgvector defines it
    /// (cosine: `1 - cos`, inner product: `-(a · b)`).
    pub distance: f64,
}

/// Seeded clustered vectors, query points, and each query's exact `k`
/// nearest neighbours.
///
/// Deterministic: the same [`FixtureSpec`] gives bit-identical vectors on
/// every platform (SplitMix64, integer arithmetic and exact `f32`
/// conversions; see [`SplitMix`]) and the same neighbours (distances in
/// `f64`, ties broken by the lower position). A server computing distances
/// in `f32` agrees on the ranking except between points whose distances
/// differ by less than `f32` rounding, which a seeded data set either has
/// or not, the same way on every run.
///
/// ```
/// use reposmith_core::testing::{FixtureSpec, VectorFixture};
///
/// let fixture = VectorFixture::generate(FixtureSpec::new(500, 16, 5, 42).k(3)).unwrap();
/// assert_eq!(fixture.vectors.len(), 500);
/// // A test stores vectors[i] under id i, searches each query for k rows,
/// // and compares the ids found with the exact neighbours:
/// let found: Vec<usize> = fixture.neighbours[0].iter().map(|n| n.position).collect();
/// assert_eq!(fixture.recall(0, &found), 1.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VectorFixture {
    /// What it was generated from.
    pub spec: FixtureSpec,
    /// The data points; a point's position is its identity in `neighbours`.
    pub vectors: Vec<Vec<f32>>,
    /// The query points.
    pub queries: Vec<Vec<f32>>,
    /// For each query, its `k` nearest points, nearest first.
    pub neighbours: Vec<Vec<Neighbour>>,
}

impl VectorFixture {
    /// Draws the points and queries of `spec` and ranks every point for
    /// every query (brute force: `n × queries` distances).
    /// [`Error::InvalidInput`] when a setting cannot make a fixture.
    pub fn generate(spec: FixtureSpec) -> Result<VectorFixture> {
        spec.check()?;
        let mut rng = SplitMix::new(spec.seed);
        let clusters = Clusters::new(spec.dims, spec.clusters, &mut rng);
        let vectors: Vec<Vec<f32>> = (0..spec.n).map(|_| clusters.point(&mut rng)).collect();
        let queries: Vec<Vec<f32>> = (0..spec.queries)
            .map(|i| clusters.query(i, query_seed(spec.seed, i)))
            .collect();
        let mut fixture = VectorFixture {
            spec,
            vectors,
            queries,
            neighbours: Vec::new(),
        };
        fixture.neighbours = fixture
            .queries
            .iter()
            .map(|q| fixture.exact(q, fixture.spec.k))
            .collect();
        Ok(fixture)
    }

    /// The `k` points nearest `query` by the fixture's distance, nearest
    /// first, ties by position.
    pub fn exact(&self, query: &[f32], k: usize) -> Vec<Neighbour> {
        let mut all: Vec<Neighbour> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(position, v)| Neighbour {
                position,
                distance: distance(self.spec.distance, query, v),
            })
            .collect();
        let order = |a: &Neighbour, b: &Neighbour| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.position.cmp(&b.position))
        };
        let k = k.min(all.len());
        if k == 0 {
            return Vec::new();
        }
        all.select_nth_unstable_by(k - 1, order);
        all.truncate(k);
        all.sort_unstable_by(order);
        all
    }

    /// The share of query `query`'s exact neighbours among `found` (point
    /// positions, in any order): 1.0 when a search found all of them.
    /// 0.0 for a query the fixture does not have.
    pub fn recall(&self, query: usize, found: &[usize]) -> f64 {
        let Some(exact) = self.neighbours.get(query).filter(|e| !e.is_empty()) else {
            return 0.0;
        };
        let hits = exact.iter().filter(|n| found.contains(&n.position)).count();
        hits as f64 / exact.len() as f64
    }
}

/// The seed of query `i`: its own stream, apart from the data's.
fn query_seed(seed: u64, i: usize) -> u64 {
    let mut mix = SplitMix::new(seed ^ QUERY_SALT);
    mix.next_u64().wrapping_add(i as u64)
}

/// `distance` between `a` and `b` in `f64`, as pgvector defines it:
/// cosine `1 - a·b / (|a||b|)` (NaN when either is zero, as pgvector
/// answers), L2 `sqrt(Σ (a-b)²)`, inner product `-(a · b)`, L1 `Σ |a-b|`;
/// NaN for the bit distances.
pub fn distance(distance: Distance, a: &[f32], b: &[f32]) -> f64 {
    let pairs = || a.iter().zip(b).map(|(x, y)| (f64::from(*x), f64::from(*y)));
    match distance {
        Distance::Cosine => {
            let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
            for (x, y) in pairs() {
                dot += x * y;
                na += x * x;
                nb += y * y;
            }
            1.0 - dot / (na * nb).sqrt()
        }
        Distance::L2 => pairs().map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt(),
        Distance::InnerProduct => -pairs().map(|(x, y)| x * y).sum::<f64>(),
        Distance::L1 => pairs().map(|(x, y)| (x - y).abs()).sum(),
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_are_the_brute_force_ranking() {
        for d in [
            Distance::Cosine,
            Distance::L2,
            Distance::InnerProduct,
            Distance::L1,
        ] {
            let spec = FixtureSpec::new(300, 8, 4, 11).queries(5).k(7).distance(d);
            let fixture = VectorFixture::generate(spec).unwrap();
            assert_eq!(fixture.neighbours.len(), 5);
            for (q, exact) in fixture.queries.iter().zip(&fixture.neighbours) {
                let mut all: Vec<(f64, usize)> = fixture
                    .vectors
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (distance(d, q, v), i))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let expected: Vec<usize> = all.iter().take(7).map(|(_, i)| *i).collect();
                let got: Vec<usize> = exact.iter().map(|n| n.position).collect();
                assert_eq!(got, expected, "{d:?}");
            }
            let found: Vec<usize> = fixture.neighbours[0].iter().map(|n| n.position).collect();
            assert_eq!(fixture.recall(0, &found), 1.0);
            assert!((fixture.recall(0, &found[..3]) - 3.0 / 7.0).abs() < 1e-12);
            assert_eq!(fixture.recall(99, &found), 0.0);
        }
    }

    #[test]
    fn the_same_spec_gives_the_same_bits_and_another_seed_does_not() {
        let spec = FixtureSpec::new(200, 16, 3, 7);
        let a = VectorFixture::generate(spec.clone()).unwrap();
        assert_eq!(a, VectorFixture::generate(spec).unwrap());
        let b = VectorFixture::generate(FixtureSpec::new(200, 16, 3, 8)).unwrap();
        assert_ne!(a.vectors, b.vectors);
        assert!(a.queries.iter().all(|q| !a.vectors.contains(q)));
        // Pinned across platforms and releases: FNV-1a over every bit of the
        // data and queries of this spec (checked against an independent
        // implementation of the generator with IEEE single rounding).
        assert_eq!(checksum(&a), PINNED_CHECKSUM);
    }

    const PINNED_CHECKSUM: u64 = 18_321_306_279_625_928_944;

    fn checksum(f: &VectorFixture) -> u64 {
        f.vectors
            .iter()
            .chain(&f.queries)
            .flatten()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .fold(0xCBF2_9CE4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
            })
    }

    #[test]
    fn specs_that_cannot_make_a_fixture_are_named() {
        let bad = [
            (FixtureSpec::new(0, 4, 1, 0), "n"),
            (FixtureSpec::new(10, 0, 1, 0), "dims"),
            (FixtureSpec::new(10, 4, 0, 0), "clusters"),
            (FixtureSpec::new(10, 4, 1, 0).k(11), "k"),
            (
                FixtureSpec::new(10, 4, 1, 0).distance(Distance::Hamming),
                "distance",
            ),
        ];
        for (spec, field) in bad {
            let err = VectorFixture::generate(spec).unwrap_err().to_string();
            assert!(err.contains(&format!("FixtureSpec.{field}")), "{err}");
        }
    }
}
