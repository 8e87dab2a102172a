//! The arithmetic of each limit kind, free of storage: the generic cell
//! rate algorithm for rates and the calendar windows of quotas. The Redis
//! script runs the same steps in Lua; the in-process fallback runs these.
//!
//! A rate's state is its theoretical arrival time (TAT) as "how far ahead
//! of now", in µs: 0 when idle, growing by `charge × interval` per
//! admission and shrinking as time passes. A charge is admitted when the
//! TAT after it stays within the tolerance `burst × interval`. Keeping the
//! offset from now rather than the absolute TAT keeps the double exact to a
//! nanosecond over any period (an absolute µs timestamp has only a quarter
//! µs of resolution in a double).

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate};

use super::spec::Window;

/// How much a float comparison may be off and still admit: far below a µs.
const EPSILON_US: f64 = 1e-3;

/// A rate limit's parameters in µs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcra {
    /// µs per unit: the period over the limit.
    pub interval_us: f64,
    /// `burst × interval`: how far ahead the TAT may run.
    pub tolerance_us: f64,
}

/// The outcome of one charge against a rate or a quota.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// Whether the charge fits.
    pub admitted: bool,
    /// The state after the step (unchanged when refused).
    pub state: f64,
    /// Units still available after the step.
    pub remaining: u64,
    /// How long until the charge would fit (0 when admitted), µs.
    pub retry_after_us: u64,
    /// How long until the limit is back to full capacity, µs.
    pub reset_after_us: u64,
}

impl Gcra {
    /// `limit` units per `period` with `burst` at once.
    pub fn new(limit: u64, period: Duration, burst: u64) -> Gcra {
        let interval_us = period.as_micros() as f64 / limit as f64;
        Gcra {
            interval_us,
            tolerance_us: burst as f64 * interval_us,
        }
    }

    /// The TAT offset `ahead_us` after `elapsed_us` have passed.
    pub fn decay(ahead_us: f64, elapsed_us: f64) -> f64 {
        (ahead_us - elapsed_us).max(0.0)
    }

    /// Charges `charge` units against a TAT `ahead_us` of now.
    pub fn step(&self, ahead_us: f64, charge: u64) -> Step {
        let after = ahead_us + charge as f64 * self.interval_us;
        if after <= self.tolerance_us + EPSILON_US {
            Step {
                admitted: true,
                state: after,
                remaining: self.units_within(self.tolerance_us - after),
                retry_after_us: 0,
                reset_after_us: ceil_us(after),
            }
        } else {
            Step {
                admitted: false,
                state: ahead_us,
                remaining: self.units_within(self.tolerance_us - ahead_us),
                retry_after_us: ceil_us(after - self.tolerance_us).max(1),
                reset_after_us: ceil_us(ahead_us),
            }
        }
    }

    /// The TAT offset after a correction of `delta` units (a refund when
    /// negative), never below idle.
    pub fn adjust(&self, ahead_us: f64, delta: i64) -> f64 {
        (ahead_us + delta as f64 * self.interval_us).max(0.0)
    }

    fn units_within(&self, slack_us: f64) -> u64 {
        if slack_us <= 0.0 {
            0
        } else {
            ((slack_us + EPSILON_US) / self.interval_us).floor() as u64
        }
    }
}

/// Charges `charge` units against a quota of `limit` with `used` counted in
/// the current window, which ends in `ends_in_us`.
pub fn quota_step(limit: u64, used: u64, charge: u64, ends_in_us: u64) -> Step {
    let after = used.saturating_add(charge);
    if after <= limit {
        Step {
            admitted: true,
            state: after as f64,
            remaining: limit - after,
            retry_after_us: 0,
            reset_after_us: ends_in_us,
        }
    } else {
        Step {
            admitted: false,
            state: used as f64,
            remaining: limit.saturating_sub(used),
            retry_after_us: ends_in_us.max(1),
            reset_after_us: ends_in_us,
        }
    }
}

/// The window holding `now_us` (µs since the Unix epoch): its number and
/// its end (µs since the epoch). Months are numbered `year × 12 + month0`.
pub fn window_of(window: Window, now_us: i64) -> (i64, i64) {
    const DAY_US: i64 = 86_400_000_000;
    match window {
        Window::Day => {
            let id = now_us.div_euclid(DAY_US);
            (id, (id + 1) * DAY_US)
        }
        Window::Every(every) => {
            let len = i64::try_from(every.as_micros()).unwrap_or(i64::MAX);
            let id = now_us.div_euclid(len);
            (id, (id + 1).saturating_mul(len))
        }
        Window::Month => {
            let date = DateTime::from_timestamp_micros(now_us)
                .unwrap_or_default()
                .date_naive();
            let (year, month0) = (date.year(), date.month0());
            let (next_year, next_month) = if month0 == 11 {
                (year + 1, 1)
            } else {
                (year, month0 + 2)
            };
            let end = NaiveDate::from_ymd_opt(next_year, next_month, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_micros())
                .unwrap_or(i64::MAX);
            (i64::from(year) * 12 + i64::from(month0), end)
        }
    }
}

/// `us` rounded up to a whole µs.
pub fn ceil_us(us: f64) -> u64 {
    if us <= 0.0 { 0 } else { us.ceil() as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        // 60 per minute, burst 3: one per second after three at once.
        let g = Gcra::new(60, Duration::from_secs(60), 3);
        let mut ahead = 0.0;
        for expected_remaining in [2, 1, 0] {
            let s = g.step(ahead, 1);
            assert!(s.admitted);
            assert_eq!(s.remaining, expected_remaining);
            ahead = s.state;
        }
        let denied = g.step(ahead, 1);
        assert!(!denied.admitted);
        assert_eq!(denied.retry_after_us, 1_000_000);
        assert_eq!(denied.reset_after_us, 3_000_000);
        assert_eq!(denied.state, ahead, "a denial consumes nothing");
        let later = g.step(Gcra::decay(ahead, 1_000_000.0), 1);
        assert!(later.admitted && later.remaining == 0);
    }

    #[test]
    fn fractional_intervals_stay_exact_over_a_long_run() {
        // 7 per minute: 8_571_428.57… µs per unit. A million admissions at
        // exactly the emission rate must all pass, and one more must not.
        let g = Gcra::new(7, Duration::from_secs(60), 7);
        let mut ahead = 0.0;
        for _ in 0..7 {
            ahead = g.step(ahead, 1).state;
        }
        for _ in 0..1_000_000 {
            ahead = Gcra::decay(ahead, g.interval_us);
            let s = g.step(ahead, 1);
            assert!(s.admitted);
            ahead = s.state;
        }
        assert!(!g.step(ahead, 1).admitted);
    }

    #[test]
    fn refunds_never_go_below_idle() {
        let g = Gcra::new(100, Duration::from_secs(1), 100);
        assert_eq!(g.adjust(50_000.0, -10), 0.0);
        assert_eq!(g.adjust(50_000.0, -2), 30_000.0);
        assert_eq!(g.adjust(0.0, 3), 30_000.0);
    }

    #[test]
    fn quotas_count_within_their_window() {
        assert!(quota_step(10, 7, 3, 5).admitted);
        let denied = quota_step(10, 8, 3, 5);
        assert!(!denied.admitted && denied.remaining == 2 && denied.retry_after_us == 5);
    }

    #[test]
    fn calendar_windows() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
        let (day, end) = window_of(Window::Day, at("2026-12-07T10:00:00Z"));
        assert_eq!(end, at("2026-12-08T00:00:00Z"));
        assert_eq!(window_of(Window::Day, at("2026-12-07T23:59:59Z")).0, day);
        let (dec, end) = window_of(Window::Month, at("2026-12-31T23:00:00Z"));
        assert_eq!(end, at("2027-01-01T00:00:00Z"));
        assert_eq!(
            window_of(Window::Month, at("2027-01-01T00:00:00Z")).0,
            dec + 1
        );
        let (_, end) = window_of(Window::Month, at("2028-02-10T00:00:00Z"));
        assert_eq!(end, at("2028-03-01T00:00:00Z"));
        let (_, end) = window_of(
            Window::Every(Duration::from_secs(3600)),
            at("2026-12-07T10:30:00Z"),
        );
        assert_eq!(end, at("2026-12-07T11:00:00Z"));
    }
}
