//! The tuner's rules on synthetic recall curves: deterministic, no database.

use super::*;

fn rules() -> Rules {
    Rules {
        target: 0.95,
        floor: 10,
        ceiling: 400,
        min_samples: 20,
        max_samples: 100,
        margin: 0.02,
        z: 1.64,
        growth: 1.5,
        precision: 0.1,
        memory: 1000,
    }
}

/// Recall rising with the knob: reaches 0.95 first at 70 (30 ln 10 = 69.08).
fn curve(value: u32) -> f64 {
    1.0 - 0.5 * (-f64::from(value) / 30.0).exp()
}

/// The smallest value whose recall on `curve` reaches `target`.
fn smallest(curve: impl Fn(u32) -> f64, target: f64) -> u32 {
    (1..=1000).find(|&v| curve(v) >= target).unwrap()
}

/// Feeds `n` samples, each `recall(current, i)`, and returns the moves.
fn feed(tuner: &mut Tuner, n: usize, recall: impl Fn(u32, usize) -> f64) -> Vec<Change> {
    let mut moves = Vec::new();
    for i in 0..n {
        let current = tuner.current();
        if let Decision::Move(change) = tuner.observe(Some(current), recall(current, i)) {
            moves.push(change);
        }
    }
    moves
}

/// A deterministic spread of ±`amplitude` around `mean` (mean exactly `mean` per 4 samples).
fn wobble(mean: f64, amplitude: f64, i: usize) -> f64 {
    mean + amplitude * [1.0, -1.0, 0.5, -0.5][i % 4]
}

#[test]
fn raises_until_the_target_is_reached_and_no_further_than_one_step() {
    let mut tuner = Tuner::new(rules(), 40);
    // Fewer samples than the low mark's memory (1000): the bracket is still known.
    let moves = feed(&mut tuner, 600, |v, _| curve(v));
    let best = smallest(curve, 0.95);
    let settled = tuner.current();
    assert!(tuner.settled() && tuner.reachable());
    assert!(curve(settled) >= 0.95, "settled at {settled} below target");
    let step = (f64::from(settled) * 0.1).ceil() as u32;
    assert!(
        settled >= best && settled - best <= step,
        "settled {settled}, smallest {best}, one step {step}: {moves:?}"
    );
    // Never above the first value that reached the target.
    let first_above = moves.iter().map(|m| m.to).max().unwrap();
    assert!(first_above <= 90, "{moves:?}");
    let (below, above) = tuner.bracket();
    assert!(curve(below.unwrap()) < 0.95 && above == Some(settled));
}

#[test]
fn a_mean_equal_to_the_target_reaches_it_despite_rounding() {
    let rules = Rules {
        target: 0.9,
        min_samples: 40,
        z: 0.0,
        ..rules()
    };
    let mut tuner = Tuner::new(rules, 40);
    // Recall@10 values whose mean is 0.9, but not in binary.
    let samples: Vec<f64> = (0..40).map(|i| [0.7, 1.0, 1.0, 0.9][i % 4]).collect();
    let mean = samples.iter().sum::<f64>() / 40.0;
    assert!(mean < 0.9, "the case this test is about: {mean}");
    let mut last = Decision::Wait;
    for s in samples {
        last = tuner.observe(Some(40), s);
    }
    assert_eq!(last, Decision::Stay { reachable: true });
}

#[test]
fn never_leaves_the_ceiling_and_says_the_target_is_out_of_reach() {
    let mut tuner = Tuner::new(
        Rules {
            ceiling: 50,
            ..rules()
        },
        40,
    );
    let moves = feed(&mut tuner, 1000, |v, _| curve(v));
    assert!(moves.iter().all(|m| m.to <= 50), "{moves:?}");
    assert_eq!(tuner.current(), 50);
    assert!(tuner.settled() && !tuner.reachable());
}

#[test]
fn the_start_is_clamped_and_the_floor_holds_when_lowering() {
    assert_eq!(Tuner::new(rules(), 5).current(), 10);
    assert_eq!(Tuner::new(rules(), 900).current(), 400);
    // Recall 1.0 everywhere: shrink to the floor, never below.
    let mut tuner = Tuner::new(
        Rules {
            floor: 30,
            ..rules()
        },
        400,
    );
    let moves = feed(&mut tuner, 2000, |_, _| 1.0);
    assert_eq!(tuner.current(), 30, "{moves:?}");
    assert!(
        moves
            .iter()
            .all(|m| m.reason == Reason::WellAbove && m.to >= 30)
    );
}

#[test]
fn a_tuner_started_high_comes_down_to_the_smallest_value_that_reaches_the_target() {
    let mut tuner = Tuner::new(rules(), 400);
    feed(&mut tuner, 3000, |v, _| curve(v));
    let settled = tuner.current();
    let best = smallest(curve, 0.95);
    assert!(curve(settled) >= 0.95 && settled - best <= (f64::from(settled) * 0.1).ceil() as u32);
}

#[test]
fn samples_at_another_value_are_ignored() {
    let mut tuner = Tuner::new(rules(), 40);
    for _ in 0..500 {
        // An explicit ef_search(200) search, and one at the session's 40 with k above it.
        assert_eq!(tuner.observe(Some(200), 0.5), Decision::Wait);
        assert_eq!(tuner.observe(None, 0.5), Decision::Wait);
    }
    assert_eq!(tuner.current(), 40);
    assert_eq!(tuner.at_current().0, 0);
}

#[test]
fn probing_waits_for_confidence_then_decides_on_the_mean_at_max_samples() {
    let mut tuner = Tuner::new(rules(), 40);
    // Mean 0.949, spread 0.05: not confidently below after 20 samples.
    let mut decisions = Vec::new();
    for i in 0..100 {
        decisions.push(tuner.observe(Some(40), wobble(0.949, 0.05, i)));
    }
    assert!(decisions[..99].iter().all(|d| *d == Decision::Wait));
    assert!(matches!(decisions[99], Decision::Move(c) if c.to == 60 && c.samples == 100));
}

#[test]
fn twenty_perfect_samples_are_not_yet_proof_of_the_target() {
    let mut tuner = Tuner::new(rules(), 40);
    // A value whose true recall is 0.93 gives 20 perfect searches in a row 23 % of the time.
    for _ in 0..20 {
        assert_eq!(tuner.observe(Some(40), 1.0), Decision::Wait);
    }
    let (low, _) = wilson(1.0, 20, 1.64);
    assert!((0.88..0.89).contains(&low), "{low}");
    // A miss-free run long enough is.
    let decisions: Vec<Decision> = (0..60).map(|_| tuner.observe(Some(40), 1.0)).collect();
    assert!(
        decisions.contains(&Decision::Stay { reachable: true })
            || decisions.iter().any(|d| matches!(d, Decision::Move(_)))
    );
}

#[test]
fn a_settled_value_does_not_move_on_noise_around_the_target() {
    let mut tuner = Tuner::new(rules(), 70);
    // Reach a verdict at 70 (0.955, on the mean after 100 samples).
    feed(&mut tuner, 100, |v, _| if v >= 70 { 0.955 } else { 0.90 });
    assert!(tuner.settled(), "{:?}", tuner.bracket());
    let value = tuner.current();
    // Noise of ±0.06 around 0.952: block means sit on the target, no confident verdict.
    let moves = feed(&mut tuner, 5000, |_, i| wobble(0.952, 0.06, i));
    assert!(moves.is_empty(), "{moves:?}");
    assert_eq!(tuner.current(), value);
}

#[test]
fn a_settled_value_rises_when_recall_drifts_confidently_below() {
    let mut tuner = Tuner::new(rules(), 40);
    feed(&mut tuner, 2000, |v, _| curve(v));
    let before = tuner.current();
    // The data changed: every value now loses 0.03 of recall (at the
    // settled value, from 0.96 to 0.93: a thousand samples tell them apart).
    let moves = feed(&mut tuner, 5000, |v, _| curve(v) - 0.03);
    assert!(tuner.current() > before, "{moves:?}");
    let settled = tuner.current();
    assert!(curve(settled) - 0.03 >= 0.95);
    let best = smallest(|v| curve(v) - 0.03, 0.95);
    assert!(
        settled - best <= (f64::from(settled) * 0.1).ceil() as u32,
        "{moves:?}"
    );
}

#[test]
fn a_forgotten_low_mark_lets_a_settled_value_probe_down_when_recall_improves() {
    let mut tuner = Tuner::new(
        Rules {
            memory: 200,
            ..rules()
        },
        40,
    );
    feed(&mut tuner, 2000, |v, _| curve(v));
    let before = tuner.current();
    // The index was rebuilt better: recall 1.0 at every value.
    let moves = feed(&mut tuner, 5000, |_, _| 1.0);
    assert!(tuner.current() < before, "{moves:?}");
    assert_eq!(tuner.current(), 10, "down to the floor: {moves:?}");
}
