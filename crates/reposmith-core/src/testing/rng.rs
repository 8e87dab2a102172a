//! The seeded generator behind the vector fixtures (and the benchmarks'
//! data sets): SplitMix64 and clustered points drawn from it, with integer
//! arithmetic and exact conversions only, so a seed gives bit-identical
//! vectors on every platform and compiler.

/// SplitMix64 (Steele, Lea and Flood): a tiny, well-distributed generator,
/// so seeded data needs no crate. Not for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed` (every seed, zero included, is fine).
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1), on a grid of 2^-22 (exact in `f32`).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform below `n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        match n {
            0 => 0,
            n => usize::try_from(self.next_u64() % n as u64).unwrap_or(0),
        }
    }
}

/// How far a point strays from its centre, per dimension (centres lie in
/// [-1, 1) per dimension).
pub const SPREAD: f32 = 0.25;

/// Cluster centres, uniform in [-1, 1) per dimension, and points drawn
/// around them ([`SPREAD`] per dimension).
#[derive(Debug, Clone)]
pub struct Clusters {
    centres: Vec<Vec<f32>>,
}

impl Clusters {
    /// `clusters` centres of `dims` dimensions drawn from `rng`.
    pub fn new(dims: usize, clusters: usize, rng: &mut SplitMix) -> Clusters {
        let centres = (0..clusters)
            .map(|_| (0..dims).map(|_| rng.unit()).collect())
            .collect();
        Clusters { centres }
    }

    /// The centres, in the order they were drawn.
    pub fn centres(&self) -> &[Vec<f32>] {
        &self.centres
    }

    /// A point near a centre `rng` picks (empty without centres).
    pub fn point(&self, rng: &mut SplitMix) -> Vec<f32> {
        let Some(centre) = self.centres.get(rng.below(self.centres.len())) else {
            return Vec::new();
        };
        centre.iter().map(|c| c + SPREAD * rng.unit()).collect()
    }

    /// A point near centre `i % clusters`, drawn from its own `seed`, so
    /// queries do not disturb the data's sequence (empty without centres).
    pub fn query(&self, i: usize, seed: u64) -> Vec<f32> {
        let Some(centre) = self.centres.get(i % self.centres.len().max(1)) else {
            return Vec::new();
        };
        let mut rng = SplitMix::new(seed);
        centre.iter().map(|c| c + SPREAD * rng.unit()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_splitmix64() {
        // The first outputs of SplitMix64 from seed 0, as published with the
        // reference implementation (and `rand_xoshiro::SplitMix64`).
        let mut rng = SplitMix::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut rng = SplitMix::new(7);
        for _ in 0..1000 {
            let u = rng.unit();
            assert!((-1.0..1.0).contains(&u));
            assert!(rng.below(3) < 3);
        }
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn points_stay_near_their_centre() {
        let mut rng = SplitMix::new(1);
        let clusters = Clusters::new(4, 2, &mut rng);
        for _ in 0..100 {
            let p = clusters.point(&mut rng);
            let near = clusters.centres().iter().any(|c| {
                c.iter()
                    .zip(&p)
                    .all(|(c, x)| (c - x).abs() <= SPREAD + f32::EPSILON)
            });
            assert!(near, "{p:?}");
        }
        assert_eq!(clusters.query(3, 9), clusters.query(3, 9));
        assert!(Clusters::new(4, 0, &mut rng).point(&mut rng).is_empty());
    }
}
