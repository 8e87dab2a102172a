//! What a sample measures, and which searches are sampled: recall@k of the
//! index's hits against the exact ones, with distance ties at the boundary
//! counted honestly, and a sampling decision that costs one atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

use reposmith_core::Value;

/// A hit of either run: its id and its distance to the query.
pub(crate) type Hit = (Value, f64);

/// recall@k = |ANN ∩ exact| / |exact|, `None` when the exact search found
/// nothing (recall is undefined there, and counting it as 1 would flatter
/// filtered searches that match no row).
///
/// `exact` is in distance order; its length may be below `k` (a filter or
/// `max_distance` matched fewer rows), and the denominator is then its
/// length. An ANN hit counts as correct when its id is among the exact ones
/// *or* its distance is at most the exact run's last distance: rows tied
/// with the k-th neighbour are equally right answers, and which of them a
/// `LIMIT` keeps is arbitrary. Both runs compute the distance with the same
/// SQL expression on the same stored value, so a tie is bit-for-bit. (A row
/// deleted between the two runs also counts as found if it was close
/// enough; a row inserted between them counts as missed. Both are rare at a
/// sampled rate and both are what the user saw.)
pub(crate) fn recall_at_k(ann: &[Hit], exact: &[Hit]) -> Option<f64> {
    let boundary = exact.last()?.1;
    let found = ann
        .iter()
        .filter(|(id, distance)| *distance <= boundary || exact.iter().any(|(e, _)| e == id))
        .count();
    Some(found.min(exact.len()) as f64 / exact.len() as f64)
}

/// Decides which searches are sampled: a seeded hash of a counter against
/// the rate, so the choice is cheap, spread evenly (no aliasing with a
/// periodic request pattern, unlike every n-th search) and needs no `rand`.
#[derive(Debug)]
pub(crate) struct Sampler {
    /// A search is sampled when its hash is below this (0: never).
    threshold: u64,
    always: bool,
    counter: AtomicU64,
}

impl Sampler {
    /// Samples a fraction `rate` of searches (0: none, 1 or more: all).
    pub(crate) fn new(rate: f64) -> Sampler {
        let rate = if rate.is_nan() { 0.0 } else { rate };
        Sampler {
            // `as` saturates: rates at or above 1 are handled by `always`.
            threshold: (rate.clamp(0.0, 1.0) * 18_446_744_073_709_551_616.0) as u64,
            always: rate >= 1.0,
            counter: AtomicU64::new(0x5EED),
        }
    }

    /// True when no search is ever sampled.
    pub(crate) fn off(&self) -> bool {
        self.threshold == 0 && !self.always
    }

    /// Whether the next search is sampled.
    pub(crate) fn take(&self) -> bool {
        if self.always {
            return true;
        }
        if self.threshold == 0 {
            return false;
        }
        splitmix(self.counter.fetch_add(1, Ordering::Relaxed)) < self.threshold
    }
}

/// SplitMix64's output function: consecutive inputs map to uniform, independent-looking outputs.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(rows: &[(i64, f64)]) -> Vec<Hit> {
        rows.iter().map(|&(id, d)| (Value::I64(id), d)).collect()
    }

    #[test]
    fn recall_is_the_share_of_exact_ids_found() {
        let exact = hits(&[(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]);
        let ann = hits(&[(1, 0.1), (3, 0.3), (4, 0.4), (9, 0.5)]);
        assert_eq!(recall_at_k(&ann, &exact), Some(0.75));
        assert_eq!(recall_at_k(&exact, &exact), Some(1.0));
        assert_eq!(recall_at_k(&[], &exact), Some(0.0));
    }

    #[test]
    fn a_hit_tied_with_the_last_exact_distance_is_correct() {
        // Rows 4 and 5 are both at 0.4; the exact LIMIT kept 4, the index found 5.
        let exact = hits(&[(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]);
        let ann = hits(&[(1, 0.1), (2, 0.2), (3, 0.3), (5, 0.4)]);
        assert_eq!(recall_at_k(&ann, &exact), Some(1.0));
        // Just past the boundary is a miss.
        let ann = hits(&[(1, 0.1), (2, 0.2), (3, 0.3), (5, 0.400_000_1)]);
        assert_eq!(recall_at_k(&ann, &exact), Some(0.75));
        // Three rows tied at the boundary cannot count for more than the exact rows.
        let ann = hits(&[(1, 0.1), (2, 0.2), (5, 0.4), (6, 0.4), (7, 0.4)]);
        assert_eq!(recall_at_k(&ann, &exact), Some(1.0));
    }

    #[test]
    fn fewer_exact_rows_than_k_is_the_denominator_and_none_is_undefined() {
        // A filter matched two rows: finding both is full recall.
        let exact = hits(&[(7, 0.5), (8, 0.9)]);
        assert_eq!(recall_at_k(&hits(&[(7, 0.5), (8, 0.9)]), &exact), Some(1.0));
        assert_eq!(recall_at_k(&hits(&[(8, 0.9)]), &exact), Some(0.5));
        assert_eq!(recall_at_k(&hits(&[(1, 0.1)]), &[]), None);
    }

    #[test]
    fn the_sampler_takes_about_its_rate() {
        let sampler = Sampler::new(0.01);
        let taken = (0..200_000).filter(|_| sampler.take()).count();
        assert!((1_700..=2_300).contains(&taken), "{taken}");
        assert!(Sampler::new(0.0).off() && !Sampler::new(0.0).take());
        assert!(Sampler::new(f64::NAN).off());
        let all = Sampler::new(1.0);
        assert!((0..1000).all(|_| all.take()));
    }
}
