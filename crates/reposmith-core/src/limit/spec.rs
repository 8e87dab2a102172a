//! What a limiter enforces: a [`Policy`] of named [`Limit`]s, validated once
//! when the limiter is built.

use std::fmt;
use std::time::Duration;

use crate::{Error, Result};

/// The largest limit, burst or cost: costs are multiplied by emission
/// intervals in the server script's doubles, exact below 2^53.
pub const MAX_AMOUNT: u64 = 1 << 40;
/// The longest rate period (a year); longer windows are quotas.
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);
/// The longest policy or limit name, in bytes.
pub const MAX_NAME: usize = 64;
/// The longest a quota window may be, and the longest a rate may take to
/// drain a full burst (`burst × period / limit`): ten years. Beyond it
/// expiries no longer fit the server's integer arithmetic.
pub const MAX_SPAN: Duration = Duration::from_secs(3_650 * 24 * 3600);

/// What a limit counts per admitted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unit {
    /// Each call counts 1, whatever its cost (requests per minute).
    Calls,
    /// Each call counts its cost (tokens per minute, a token quota).
    Cost,
}

/// The calendar window of a quota, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Window {
    /// A UTC day, reset at 00:00 UTC.
    Day,
    /// A UTC calendar month, reset at 00:00 UTC on the first.
    Month,
    /// Fixed windows of this length, aligned to the Unix epoch (at least a
    /// second, whole seconds).
    Every(Duration),
}

/// The kind of a limit and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// GCRA: `limit` per `period`, up to `burst` at once, refilled evenly.
    Rate {
        /// Units admitted per period on average.
        limit: u64,
        /// The period.
        period: Duration,
        /// Units admitted at once from idle (defaults to `limit`).
        burst: u64,
    },
    /// At most `limit` units per calendar window; the count resets when the
    /// window ends.
    Quota {
        /// Units per window.
        limit: u64,
        /// The window.
        window: Window,
    },
    /// At most `max` calls in flight: an admitted call holds a permit (a
    /// lease) until it is released or its lease ends.
    Concurrency {
        /// Permits held at once.
        max: u64,
    },
}

impl Kind {
    /// The most it admits at once: a rate's burst, a quota's limit, a
    /// concurrency limit's permits.
    pub fn capacity(&self) -> u64 {
        match *self {
            Kind::Rate { burst, .. } => burst,
            Kind::Quota { limit, .. } => limit,
            Kind::Concurrency { max } => max,
        }
    }

    /// What the `q` of the `RateLimit-Policy` header advertises per window:
    /// a rate's limit per period, a quota's limit, the permits.
    pub fn quota(&self) -> u64 {
        match *self {
            Kind::Rate { limit, .. } | Kind::Quota { limit, .. } => limit,
            Kind::Concurrency { max } => max,
        }
    }

    /// The window the headers advertise: a rate's period, a quota's window
    /// (a month as 30 days); none for concurrency.
    pub fn window(&self) -> Option<Duration> {
        match *self {
            Kind::Rate { period, .. } => Some(period),
            Kind::Quota { window, .. } => Some(match window {
                Window::Day => Duration::from_secs(86_400),
                Window::Month => Duration::from_secs(30 * 86_400),
                Window::Every(every) => every,
            }),
            Kind::Concurrency { .. } => None,
        }
    }
}

/// One named limit of a [`Policy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    name: String,
    kind: Kind,
    unit: Unit,
}

impl Limit {
    /// `limit` calls per `period` (requests per minute: `requests("rpm",
    /// 600, Duration::from_secs(60))`), with a burst of `limit`.
    pub fn requests(name: impl Into<String>, limit: u64, period: Duration) -> Limit {
        Limit::rate(name, limit, period, Unit::Calls)
    }

    /// `limit` units of cost per `period` (tokens per minute), with a burst
    /// of `limit`.
    pub fn tokens(name: impl Into<String>, limit: u64, period: Duration) -> Limit {
        Limit::rate(name, limit, period, Unit::Cost)
    }

    fn rate(name: impl Into<String>, limit: u64, period: Duration, unit: Unit) -> Limit {
        Limit {
            name: name.into(),
            kind: Kind::Rate {
                limit,
                period,
                burst: limit,
            },
            unit,
        }
    }

    /// At most `limit` units of cost per calendar `window` (a daily or
    /// monthly token quota); [`Limit::counting_calls`] makes it count calls.
    pub fn quota(name: impl Into<String>, limit: u64, window: Window) -> Limit {
        Limit {
            name: name.into(),
            kind: Kind::Quota { limit, window },
            unit: Unit::Cost,
        }
    }

    /// At most `max` calls in flight at once.
    pub fn concurrency(name: impl Into<String>, max: u64) -> Limit {
        Limit {
            name: name.into(),
            kind: Kind::Concurrency { max },
            unit: Unit::Calls,
        }
    }

    /// Sets a rate limit's burst: how much it admits at once from idle
    /// (ignored by quotas and concurrency limits).
    #[must_use]
    pub fn burst(mut self, burst: u64) -> Limit {
        if let Kind::Rate { burst: b, .. } = &mut self.kind {
            *b = burst;
        }
        self
    }

    /// Counts each call as 1 instead of its cost (for a quota of requests).
    #[must_use]
    pub fn counting_calls(mut self) -> Limit {
        self.unit = Unit::Calls;
        self
    }

    /// The limit's name (what a denial and the headers name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its kind and parameters.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// What it counts.
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// The most it admits at once: a rate's burst, a quota's limit, a
    /// concurrency limit's permits.
    pub fn capacity(&self) -> u64 {
        self.kind.capacity()
    }

    /// What one call of `cost` counts against this limit.
    pub fn charge(&self, cost: u64) -> u64 {
        match self.unit {
            Unit::Calls => 1,
            Unit::Cost => cost,
        }
    }

    /// The window the headers advertise ([`Kind::window`]).
    pub fn window(&self) -> Option<Duration> {
        self.kind.window()
    }

    /// The five arguments the Redis script reads for this limit: kind (`r`
    /// rate, `q` quota, `c` concurrency), name, unit (`n` calls, `c` cost),
    /// and two parameters (a rate's emission interval in µs, written so it
    /// reads back exactly, and its burst; a quota's limit and window `d`,
    /// `m` or seconds; a concurrency limit's permits and nothing).
    pub fn wire(&self) -> [String; 5] {
        let unit = match self.unit {
            Unit::Calls => "n",
            Unit::Cost => "c",
        };
        let (kind, p1, p2) = match self.kind {
            Kind::Rate {
                limit,
                period,
                burst,
            } => {
                let interval = super::gcra::Gcra::new(limit, period, burst).interval_us;
                ("r", interval.to_string(), burst.to_string())
            }
            Kind::Quota { limit, window } => {
                let window = match window {
                    Window::Day => "d".to_owned(),
                    Window::Month => "m".to_owned(),
                    Window::Every(every) => every.as_secs().to_string(),
                };
                ("q", limit.to_string(), window)
            }
            Kind::Concurrency { max } => ("c", max.to_string(), String::new()),
        };
        [kind.to_owned(), self.name.clone(), unit.to_owned(), p1, p2]
    }

    fn validate(&self, policy: &str) -> Result<()> {
        check_name(&self.name, "limit name")?;
        let bad = |reason: String| {
            Error::config(
                format!("rate limit policy {policy}"),
                format!("{}: {reason}", self.name),
            )
        };
        let amount = |what: &str, n: u64| {
            if n == 0 {
                Err(bad(format!("{what} is 0; it must be at least 1")))
            } else if n > MAX_AMOUNT {
                Err(bad(format!("{what} {n} is above the maximum {MAX_AMOUNT}")))
            } else {
                Ok(())
            }
        };
        match self.kind {
            Kind::Rate {
                limit,
                period,
                burst,
            } => {
                amount("limit", limit)?;
                amount("burst", burst)?;
                if period < Duration::from_millis(1) || period > MAX_PERIOD {
                    return Err(bad(format!(
                        "period {period:?} is outside 1 ms ..= 366 days (use a quota for longer)"
                    )));
                }
                let period_us = period.as_micros();
                if u128::from(limit) > period_us {
                    return Err(bad(format!(
                        "{limit} per {period:?} is more than one per µs, the clock's resolution"
                    )));
                }
                if period_us * u128::from(burst) / u128::from(limit) > MAX_SPAN.as_micros() {
                    return Err(bad(format!(
                        "a burst of {burst} at {limit} per {period:?} takes more than ten years \
                         to drain"
                    )));
                }
            }
            Kind::Quota { limit, window } => {
                amount("limit", limit)?;
                if let Window::Every(every) = window
                    && (every < Duration::from_secs(1)
                        || every.subsec_nanos() != 0
                        || every > MAX_SPAN)
                {
                    return Err(bad(format!(
                        "window {every:?} must be whole seconds, from one to ten years"
                    )));
                }
            }
            Kind::Concurrency { max } => amount("max", max)?,
        }
        Ok(())
    }
}

/// The limits a [`Limiter`](super::Limiter) checks together for one
/// subject, all or nothing, under a name (used in keys, denials and the
/// `RateLimit-Policy` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    limits: Vec<Limit>,
}

impl Policy {
    /// An empty policy named `name` (letters, digits, `.`, `_`, `-`).
    pub fn new(name: impl Into<String>) -> Policy {
        Policy {
            name: name.into(),
            limits: Vec::new(),
        }
    }

    /// Adds a limit.
    #[must_use]
    pub fn with(mut self, limit: Limit) -> Policy {
        self.limits.push(limit);
        self
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its limits, in the order added.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The concurrency limit, if the policy has one.
    pub fn concurrency(&self) -> Option<&Limit> {
        self.limits
            .iter()
            .find(|l| matches!(l.kind, Kind::Concurrency { .. }))
    }

    /// Rejects an empty policy, bad names, duplicate names, zero or
    /// oversized amounts, out-of-range periods and more than one
    /// concurrency limit.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name, "policy name")?;
        let subject = || format!("rate limit policy {}", self.name);
        if self.limits.is_empty() {
            return Err(Error::config(subject(), "it has no limits"));
        }
        for (i, limit) in self.limits.iter().enumerate() {
            limit.validate(&self.name)?;
            if self.limits[..i].iter().any(|l| l.name == limit.name) {
                return Err(Error::config(
                    subject(),
                    format!("two limits are named {}", limit.name),
                ));
            }
        }
        let permits = self
            .limits
            .iter()
            .filter(|l| matches!(l.kind, Kind::Concurrency { .. }))
            .count();
        if permits > 1 {
            return Err(Error::config(
                subject(),
                "it has more than one concurrency limit; one subject holds one set of permits",
            ));
        }
        Ok(())
    }

    /// Rejects a cost of 0 and a cost some limit can never admit
    /// ([`Error::ExceedsCapacity`]).
    pub fn check_cost(&self, cost: u64) -> Result<()> {
        if cost == 0 {
            return Err(Error::invalid(
                "Limiter",
                "cost",
                "the cost is 0; it must be at least 1",
            ));
        }
        if cost > MAX_AMOUNT {
            return Err(Error::invalid(
                "Limiter",
                "cost",
                format!("{cost} is above the maximum {MAX_AMOUNT}"),
            ));
        }
        for limit in &self.limits {
            if matches!(limit.kind, Kind::Concurrency { .. }) {
                continue;
            }
            let charge = limit.charge(cost);
            if charge > limit.capacity() {
                return Err(Error::ExceedsCapacity {
                    policy: self.name.clone(),
                    limit: limit.name.clone(),
                    cost: charge,
                    capacity: limit.capacity(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A policy, limit or key-prefix name: 1 to [`MAX_NAME`] bytes of
/// `A-Z a-z 0-9 . _ -` (it goes into keys and headers unescaped).
pub fn check_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            what,
            format!("{name:?} must be 1 to {MAX_NAME} bytes of letters, digits, '.', '_' or '-'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute() -> Duration {
        Duration::from_secs(60)
    }

    #[test]
    fn a_valid_policy_passes_and_bad_ones_name_the_problem() {
        let ok = Policy::new("chat")
            .with(Limit::requests("rpm", 600, minute()))
            .with(Limit::tokens("tpm", 90_000, minute()).burst(30_000))
            .with(Limit::concurrency("inflight", 8))
            .with(Limit::quota("daily", 2_000_000, Window::Day));
        ok.validate().unwrap();
        let cases = [
            (Policy::new("empty"), "no limits"),
            (
                Policy::new("").with(Limit::concurrency("c", 1)),
                "policy name",
            ),
            (
                Policy::new("p").with(Limit::requests("rpm", 0, minute())),
                "limit is 0",
            ),
            (
                Policy::new("p").with(Limit::requests("rpm", 5, minute()).burst(0)),
                "burst is 0",
            ),
            (
                Policy::new("p").with(Limit::requests("rpm", 5, Duration::ZERO)),
                "period",
            ),
            (
                Policy::new("p")
                    .with(Limit::concurrency("a", 1))
                    .with(Limit::concurrency("b", 1)),
                "more than one concurrency",
            ),
            (
                Policy::new("p")
                    .with(Limit::concurrency("a", 1))
                    .with(Limit::requests("a", 1, minute())),
                "two limits are named a",
            ),
            (
                Policy::new("p").with(Limit::quota(
                    "q",
                    1,
                    Window::Every(Duration::from_millis(1500)),
                )),
                "whole seconds",
            ),
            (
                Policy::new("p").with(Limit::requests("bad name", 1, minute())),
                "limit name",
            ),
            (
                Policy::new("p").with(Limit::quota("life", 1, Window::Every(Duration::MAX))),
                "ten years",
            ),
            (
                Policy::new("p").with(Limit::tokens("t", 1, MAX_PERIOD).burst(MAX_AMOUNT)),
                "ten years to drain",
            ),
            (
                Policy::new("p").with(Limit::tokens("t", 2_000_000, Duration::from_secs(1))),
                "one per µs",
            ),
        ];
        for (policy, needle) in cases {
            let err = policy.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    #[test]
    fn costs_are_checked_against_each_limit_in_its_unit() {
        let p = Policy::new("p")
            .with(Limit::requests("rpm", 10, minute()))
            .with(Limit::tokens("tpm", 1_000, minute()).burst(500));
        p.check_cost(500).unwrap();
        let err = p.check_cost(501).unwrap_err();
        assert!(
            matches!(&err, Error::ExceedsCapacity { limit, cost: 501, capacity: 500, .. } if limit == "tpm"),
            "{err}"
        );
        assert!(matches!(p.check_cost(0), Err(Error::InvalidInput { .. })));
    }
}
