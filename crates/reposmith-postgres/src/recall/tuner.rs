//! The `ef_search`/`probes` tuner: a pure state machine over recall samples,
//! no clock, no database, so every rule below has a deterministic unit test.
//!
//! The tuner holds one knob value (`current`) for one vector field. Each
//! sample measured *at* `current` goes into a window; samples taken at any
//! other value (an explicit `.ef_search(n)`, a search whose `k` exceeded the
//! value, a sample still in flight from before the last change) are ignored.
//!
//! # Evidence
//!
//! Per-search recall@k is lumpy: most searches find all `k`, a few find
//! half or none, so its spread approaches that of a coin with the same mean
//! (at a mean of 0.92, a coin's standard deviation is 0.27: a window of 200
//! samples then pins the mean only to about ±0.02). A window is judged with
//! the Wilson score interval of a proportion at its mean, `z` standard
//! errors wide: that bounds the spread of any value in \[0, 1\], stays
//! honest with 20 samples that all happen to be 1.0 (a mean of 1.0 with no
//! spread is not proof of 0.95), and with `z` = 0 is the mean itself.
//!
//! # Rules
//!
//! - **Probing** (no verdict yet at `current`): after `min_samples`, a verdict
//!   is reached once the interval clears the target; at `max_samples` the
//!   mean alone decides (a value whose recall sits on the target must not
//!   hold the tuner forever).
//! - **Below target** → remember `current` as *too low*; move to the middle
//!   of the bracket when a value known *high enough* exists, else grow by
//!   `growth` (×1.5). Never above `ceiling`: at the ceiling the tuner stays
//!   and says the target is out of reach.
//! - **At or above target** → remember `current` as *high enough*; while a
//!   *too low* value is further than the resolution (`precision`, 10 % of
//!   the value, at least 1) below, bisect down; otherwise the tuner is
//!   **settled**. With no *too low* value known and recall above
//!   `target + margin`, shrink by `growth` (never below `floor`): that is
//!   how a tuner started high finds a cheaper value.
//! - **Settled**: samples keep accumulating at the value (a sliding window
//!   of `10 × max_samples`), re-judged once per `max_samples` new samples,
//!   and the value is left only on a confident verdict: the interval wholly
//!   below the target, or wholly above `target + margin` once the *too low*
//!   mark is older than `memory` samples. The band between is the
//!   hysteresis: noise around the target does not move a settled value, and
//!   a real drift is caught as the window grows.
//!
//! So the tuner raises the knob no higher than the smallest value whose
//! measured recall reaches the target, to within one resolution step,
//! provided recall does not fall as the knob grows and the windows are long
//! enough to tell the values apart (see `cargo xtask bench recall`).

use std::collections::VecDeque;

/// Slack in comparisons with the target: recall@10 samples are tenths, and
/// their mean is inexact in binary (36 tenths / 40 = 0.8999999999999998),
/// so a mean equal to the target must count as reaching it.
const EPSILON: f64 = 1e-9;

/// How a tuner moves; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rules {
    pub(crate) target: f64,
    pub(crate) floor: u32,
    pub(crate) ceiling: u32,
    pub(crate) min_samples: usize,
    pub(crate) max_samples: usize,
    pub(crate) margin: f64,
    /// Width of the Wilson interval in standard errors (0: the mean alone).
    pub(crate) z: f64,
    /// Multiplier of a step up (and divisor of a step down) without a bracket.
    pub(crate) growth: f64,
    /// The resolution of a bracket, as a share of the value.
    pub(crate) precision: f64,
    /// Samples after which a *too low* mark is forgotten.
    pub(crate) memory: u64,
}

/// Why the tuner moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Measured recall was below the target.
    BelowTarget,
    /// Measured recall reached the target and a lower value may too (bisecting).
    Bisect,
    /// Measured recall was comfortably above the target (target + margin).
    WellAbove,
}

/// What one sample led to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decision {
    /// Not enough evidence yet (or the sample was at another value).
    Wait,
    /// A verdict that keeps the value (`reachable` false: stuck at the ceiling below target).
    Stay { reachable: bool },
    /// Move the knob.
    Move(Change),
}

/// One move of the knob, with the measurement that caused it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Change {
    /// The value before.
    pub from: u32,
    /// The value after.
    pub to: u32,
    /// Mean recall measured at `from`.
    pub recall: f64,
    /// Samples that mean is over.
    pub samples: usize,
    /// Why.
    pub reason: Reason,
    /// Samples the tuner had seen at any value when it moved.
    pub at_sample: u64,
}

/// A value and when it was measured (in samples seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    value: u32,
    at: u64,
}

/// The verdict of a window of samples against the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Unsure,
    Below,
    Above { well: bool },
}

/// The tuner of one vector field's knob.
#[derive(Debug, Clone)]
pub(crate) struct Tuner {
    rules: Rules,
    current: u32,
    window: VecDeque<f64>,
    /// A verdict was reached at `current` (re-checks then need confidence).
    settled: bool,
    /// Samples at `current` since its last verdict.
    since_verdict: usize,
    reachable: bool,
    below: Option<Mark>,
    above: Option<Mark>,
    seen: u64,
}

impl Tuner {
    /// A tuner starting at `start`, clamped to `[floor, ceiling]`.
    pub(crate) fn new(rules: Rules, start: u32) -> Tuner {
        Tuner {
            rules,
            current: start.clamp(rules.floor, rules.ceiling),
            window: VecDeque::new(),
            settled: false,
            since_verdict: 0,
            reachable: true,
            below: None,
            above: None,
            seen: 0,
        }
    }

    /// The value searches without an explicit knob run with.
    pub(crate) fn current(&self) -> u32 {
        self.current
    }

    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }

    /// True once a verdict kept the current value.
    pub(crate) fn settled(&self) -> bool {
        self.settled
    }

    /// False when the tuner sits at its ceiling with recall below the target.
    pub(crate) fn reachable(&self) -> bool {
        self.reachable
    }

    /// The highest value measured below target and the lowest measured at or above it.
    pub(crate) fn bracket(&self) -> (Option<u32>, Option<u32>) {
        (self.below.map(|m| m.value), self.above.map(|m| m.value))
    }

    /// Samples at `current` since it was set (or last re-checked) and their mean.
    pub(crate) fn at_current(&self) -> (usize, Option<f64>) {
        let n = self.window.len();
        (
            n,
            (n > 0).then(|| self.window.iter().sum::<f64>() / n as f64),
        )
    }

    /// Takes one recall sample measured with the knob at `knob`.
    pub(crate) fn observe(&mut self, knob: Option<u32>, recall: f64) -> Decision {
        self.seen += 1;
        if knob != Some(self.current) || !recall.is_finite() {
            return Decision::Wait;
        }
        if self.window.len() >= 10 * self.rules.max_samples.max(1) {
            self.window.pop_front();
        }
        self.window.push_back(recall.clamp(0.0, 1.0));
        self.since_verdict += 1;
        match self.verdict() {
            Verdict::Unsure => Decision::Wait,
            Verdict::Below => self.on_below(),
            Verdict::Above { well } => self.on_above(well),
        }
    }

    /// The window's verdict, or `Unsure` until it may give one (see the module docs).
    fn verdict(&self) -> Verdict {
        let r = &self.rules;
        let n = self.window.len();
        let due = match self.settled {
            true => self.since_verdict >= r.max_samples.max(1),
            false => n >= r.min_samples.max(1),
        };
        if !due {
            return Verdict::Unsure;
        }
        let mean = self.window.iter().sum::<f64>() / n as f64;
        let (low, high) = wilson(mean, n, r.z);
        let target = r.target - EPSILON;
        // Probing decides on the mean alone once the window is full.
        let forced = !self.settled && n >= r.max_samples;
        if high < target || (forced && mean < target) {
            Verdict::Below
        } else if low >= target || forced {
            let well = low >= target + r.margin || (forced && mean >= target + r.margin);
            Verdict::Above { well }
        } else if self.settled {
            // A block without a confident verdict keeps the value.
            Verdict::Above { well: false }
        } else {
            Verdict::Unsure
        }
    }

    fn on_below(&mut self) -> Decision {
        let here = self.mark();
        self.below = Some(here);
        if self.above.is_some_and(|a| a.value <= here.value) {
            self.above = None;
        }
        let to = match self.above {
            Some(a) if a.value - here.value <= self.resolution(a.value) => a.value,
            Some(a) => midpoint(here.value, a.value),
            None => grow(here.value, self.rules.growth),
        }
        .min(self.rules.ceiling);
        if to == here.value {
            return self.stay(false);
        }
        self.move_to(to, Reason::BelowTarget)
    }

    fn on_above(&mut self, well: bool) -> Decision {
        let here = self.mark();
        self.above = Some(here);
        let stale = |b: &Mark| here.at.saturating_sub(b.at) > self.rules.memory;
        if self
            .below
            .is_some_and(|b| b.value >= here.value || stale(&b))
        {
            self.below = None;
        }
        match self.below {
            Some(b) if here.value - b.value > self.resolution(here.value) => {
                self.move_to(midpoint(b.value, here.value), Reason::Bisect)
            }
            None if well && here.value > self.rules.floor => {
                let to = shrink(here.value, self.rules.growth).max(self.rules.floor);
                self.move_to(to, Reason::WellAbove)
            }
            _ => self.stay(true),
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            value: self.current,
            at: self.seen,
        }
    }

    /// Keeps the value; its samples stay in the window as evidence.
    fn stay(&mut self, reachable: bool) -> Decision {
        self.settled = true;
        self.reachable = reachable;
        self.since_verdict = 0;
        Decision::Stay { reachable }
    }

    fn move_to(&mut self, to: u32, reason: Reason) -> Decision {
        let (samples, recall) = self.at_current();
        let change = Change {
            from: self.current,
            to,
            recall: recall.unwrap_or(0.0),
            samples,
            reason,
            at_sample: self.seen,
        };
        self.current = to;
        self.window.clear();
        self.since_verdict = 0;
        self.settled = false;
        self.reachable = true;
        Decision::Move(change)
    }

    /// The bracket width below which the tuner stops bisecting, at `value`.
    fn resolution(&self, value: u32) -> u32 {
        ((f64::from(value) * self.rules.precision).ceil() as u32).max(1)
    }
}

/// The Wilson score interval of a proportion `p` over `n` trials, `z`
/// standard errors wide: \[p, p\] when `z` is 0.
fn wilson(p: f64, n: usize, z: f64) -> (f64, f64) {
    let n = n as f64;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).max(0.0).sqrt() / (1.0 + z2 / n);
    (centre - half, centre + half)
}

/// The value halfway between `low` and `high`, rounded up, so it differs from `low`.
fn midpoint(low: u32, high: u32) -> u32 {
    low + (high - low).div_ceil(2)
}

/// `value` × `growth`, rounded up, at least `value + 1`.
fn grow(value: u32, growth: f64) -> u32 {
    ((f64::from(value) * growth).ceil() as u32).max(value.saturating_add(1))
}

/// `value` ÷ `growth`, rounded down, at most `value - 1`.
fn shrink(value: u32, growth: f64) -> u32 {
    ((f64::from(value) / growth).floor() as u32).min(value.saturating_sub(1))
}

#[cfg(test)]
#[path = "tuner_tests.rs"]
mod tests;
