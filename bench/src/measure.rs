//! Timing, interleaved rounds and the statistics the table prints.
//!
//! A round runs every side of a workload once, one after another, each for
//! the same number of operations; the side that goes first rotates from one
//! round to the next (A B, B A, … for two sides), so drift in the machine
//! (page cache, autovacuum, CPU frequency) lands on every side alike.
//! Ratios are taken per round, between sides that ran seconds apart, and the
//! median of those per-round ratios is reported.

use std::time::{Duration, Instant};

use crate::Result;

/// One side's measurement in one round.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Wall time of the whole round for this side, setup excluded.
    pub(crate) wall: Duration,
    /// Time of each operation.
    pub(crate) latencies: Vec<Duration>,
    /// What one round counts: operations, or rows for bulk inserts.
    pub(crate) units: u64,
}

impl Sample {
    /// Units per second in this round.
    pub(crate) fn rate(&self) -> f64 {
        self.units as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Runs `op(i)` for `i` in `0..ops` one after another, timing each.
pub(crate) async fn timed<F>(ops: usize, mut op: F) -> Result<Sample>
where
    F: AsyncFnMut(usize) -> Result<()>,
{
    let mut latencies = Vec::with_capacity(ops);
    let start = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        op(i).await?;
        latencies.push(t.elapsed());
    }
    Ok(Sample {
        wall: start.elapsed(),
        latencies,
        units: ops as u64,
    })
}

/// Every round of one side.
#[derive(Debug, Clone)]
pub(crate) struct Series<S> {
    /// Which implementation ran.
    pub(crate) side: S,
    /// One sample per measured round, in round order.
    pub(crate) samples: Vec<Sample>,
}

impl<S> Series<S> {
    /// Total units over total wall time across rounds.
    pub(crate) fn rate(&self) -> f64 {
        let units: u64 = self.samples.iter().map(|s| s.units).sum();
        let wall: f64 = self.samples.iter().map(|s| s.wall.as_secs_f64()).sum();
        units as f64 / wall.max(1e-9)
    }

    /// The median of the per-round rates: robust to one disturbed round.
    pub(crate) fn median_rate(&self) -> f64 {
        let mut rates: Vec<f64> = self.samples.iter().map(Sample::rate).collect();
        rates.sort_unstable_by(f64::total_cmp);
        median(&rates)
    }

    /// The `q` quantile (0..=1) of every operation's latency, nearest rank.
    pub(crate) fn latency(&self, q: f64) -> Duration {
        let all: Vec<Duration> = self
            .samples
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        quantile(all, q)
    }

    /// Per-round ratios of this side's `q` latency quantile to `base`'s,
    /// each taken within its round: (median, min, max).
    pub(crate) fn latency_ratio_to(&self, base: &Series<S>, q: f64) -> (f64, f64, f64) {
        let mut ratios: Vec<f64> = self
            .samples
            .iter()
            .zip(&base.samples)
            .map(|(a, b)| {
                let (a, b) = (a.latencies.clone(), b.latencies.clone());
                quantile(a, q).as_secs_f64() / quantile(b, q).as_secs_f64().max(1e-12)
            })
            .collect();
        ratios.sort_unstable_by(f64::total_cmp);
        let edge = |i: usize| ratios.get(i).copied().unwrap_or(f64::NAN);
        (
            median(&ratios),
            edge(0),
            edge(ratios.len().saturating_sub(1)),
        )
    }

    /// Per-round ratios of this side's rate to `base`'s: (median, min, max).
    pub(crate) fn ratio_to(&self, base: &Series<S>) -> (f64, f64, f64) {
        let mut ratios: Vec<f64> = self
            .samples
            .iter()
            .zip(&base.samples)
            .map(|(a, b)| a.rate() / b.rate().max(1e-9))
            .collect();
        ratios.sort_unstable_by(f64::total_cmp);
        let (min, max) = (ratios[0], ratios[ratios.len() - 1]);
        (median(&ratios), min, max)
    }
}

/// The `q` quantile (0..=1) of `values`, nearest rank; zero when empty.
pub(crate) fn quantile(mut values: Vec<Duration>, q: f64) -> Duration {
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len().max(1));
    values.get(rank - 1).copied().unwrap_or_default()
}

/// The median of sorted values (mean of the middle two for an even count).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Runs one warm-up round (discarded: it prepares statements and opens
/// connections), then `rounds` measured rounds with the starting side rotating.
pub(crate) async fn interleave<S, F>(
    sides: &[S],
    rounds: usize,
    mut run: F,
) -> Result<Vec<Series<S>>>
where
    S: Copy,
    F: AsyncFnMut(S, usize) -> Result<Sample>,
{
    for &side in sides {
        run(side, usize::MAX).await?;
    }
    let mut series: Vec<Series<S>> = sides
        .iter()
        .map(|&side| Series {
            side,
            samples: Vec::with_capacity(rounds),
        })
        .collect();
    let n = sides.len();
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let sample = run(sides[i], round).await?;
            series[i].samples.push(sample);
        }
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(units: u64, ms: u64) -> Sample {
        Sample {
            wall: Duration::from_millis(ms),
            latencies: vec![Duration::from_millis(ms)],
            units,
        }
    }

    #[test]
    fn ratio_is_the_median_of_per_round_ratios() {
        let a = Series {
            side: 'a',
            samples: vec![sample(10, 10), sample(10, 5), sample(10, 20)],
        };
        let b = Series {
            side: 'b',
            samples: vec![sample(10, 10), sample(10, 10), sample(10, 10)],
        };
        assert_eq!(a.ratio_to(&b), (1.0, 0.5, 2.0));
        assert_eq!(a.latency(0.5), Duration::from_millis(10));
        assert_eq!(a.latency(0.99), Duration::from_millis(20));
        assert_eq!(a.latency_ratio_to(&b, 0.5), (1.0, 0.5, 2.0));
        assert_eq!(quantile(Vec::new(), 0.5), Duration::ZERO);
    }

    #[tokio::test]
    async fn the_first_side_rotates() {
        let mut order = Vec::new();
        interleave(&['a', 'b'], 3, async |side, round| {
            order.push((round, side));
            Ok(sample(1, 1))
        })
        .await
        .unwrap();
        let measured: Vec<char> = order.iter().skip(2).map(|&(_, s)| s).collect();
        assert_eq!(measured, ['a', 'b', 'b', 'a', 'a', 'b']);
    }
}
