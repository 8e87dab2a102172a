//! What each side of the limits bench runs for one decision, and the limits
//! it runs with: large enough that every call is admitted, so the bench
//! times admissions (the deny share is counted and printed all the same).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reposmith::RedisBackend;
use reposmith::limit::{Limit, Limiter, LimiterOptions, Policy, Window};

use super::redis_rate::RedisRate;
use crate::Result;
use crate::bench::Side;

/// Requests per minute of every rate limit that counts calls (and its
/// burst): far above what one machine can ask for, at the limiter's
/// resolution (one unit per µs).
const RPM: u64 = 60_000_000;
/// Tokens per minute of the token rate (the same ceiling).
const TPM: u64 = 60_000_000;
/// The daily token quota.
const DAILY: u64 = 1_000_000_000_000;
/// Calls in flight a subject may hold: above the bench's concurrency.
const INFLIGHT: u64 = 100_000;
/// Tokens per call where the policy counts tokens (reposmith's script does
/// the same work whatever the cost).
pub(crate) const TOKENS: u64 = 10;
const MINUTE: Duration = Duration::from_secs(60);

/// The sides on the child's command line, in run order; the first is the
/// baseline of the tables' ratios.
pub(crate) const SIDES: [(Side, &str); 6] = [
    (Side::LimitRedisRate, "redis_rate"),
    (Side::LimitSingle, "single"),
    (Side::LimitThree, "three"),
    (Side::LimitFourCheck, "four-check"),
    (Side::LimitFour, "four"),
    (Side::LimitGovernor, "governor"),
];

/// The side named `name` on a command line.
pub(crate) fn side_named(name: &str) -> Option<Side> {
    SIDES.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
}

/// The command-line name of `side`.
pub(crate) fn name_of(side: Side) -> &'static str {
    SIDES
        .iter()
        .find(|(s, _)| *s == side)
        .map_or("?", |(_, n)| n)
}

/// What one decision runs.
#[derive(Clone)]
pub(crate) enum Decider {
    /// `limiter.check(subject, cost)`, then `release` of its permit when
    /// `release` (the four-limit policy holds a concurrency permit).
    Reposmith {
        limiter: Limiter,
        cost: u64,
        release: bool,
    },
    /// The bench's own `redis_rate`-style script.
    RedisRate(RedisRate),
    /// governor's keyed limiter, in this process only.
    Governor(Arc<DefaultKeyedRateLimiter<String>>),
}

impl Decider {
    /// `side`'s decider on `redis`.
    pub(crate) fn of(side: Side, redis: &RedisBackend) -> Result<Decider> {
        let rpm = || Limit::requests("rpm", RPM, MINUTE);
        let tpm = || Limit::tokens("tpm", TPM, MINUTE);
        let daily = || Limit::quota("daily", DAILY, Window::Day);
        let four = || {
            Policy::new("four")
                .with(rpm())
                .with(tpm())
                .with(Limit::concurrency("inflight", INFLIGHT))
                .with(daily())
        };
        let reposmith = |policy: Policy, cost: u64, release: bool| -> Result<Decider> {
            // Unreleased permits expire fast, far below INFLIGHT at any rate
            // this machine reaches (40,000/s × 100 ms = 4,000 held).
            let lease = Duration::from_millis(if release { 60_000 } else { 100 });
            let limiter = redis.limiter(policy, options().lease_ttl(lease))?;
            Ok(Decider::Reposmith {
                limiter,
                cost,
                release,
            })
        };
        match side {
            Side::LimitSingle => reposmith(Policy::new("single").with(rpm()), 1, false),
            Side::LimitThree => {
                let policy = Policy::new("three").with(rpm()).with(tpm()).with(daily());
                reposmith(policy, TOKENS, false)
            }
            Side::LimitFourCheck => reposmith(four(), TOKENS, false),
            Side::LimitFour => reposmith(four(), TOKENS, true),
            Side::LimitRedisRate => {
                let period_us = u64::try_from(MINUTE.as_micros())?;
                let rate = RedisRate::new(redis.connection(), RPM, period_us, RPM);
                Ok(Decider::RedisRate(rate))
            }
            Side::LimitGovernor => {
                let rpm = NonZeroU32::new(u32::try_from(RPM)?).ok_or("RPM is 0")?;
                Ok(Decider::Governor(Arc::new(RateLimiter::keyed(
                    Quota::per_minute(rpm),
                ))))
            }
            other => Err(format!("limits bench: no decider for {other:?}").into()),
        }
    }

    /// One decision for `subject`: true when admitted.
    pub(crate) async fn decide(&self, subject: &str) -> Result<bool> {
        match self {
            Decider::Reposmith {
                limiter,
                cost,
                release,
            } => {
                let decision = limiter.check(subject, *cost).await?;
                if *release && let Some(lease) = decision.lease {
                    limiter.release(&lease).await?;
                }
                Ok(decision.allowed)
            }
            Decider::RedisRate(rate) => rate.allow(subject, 1).await,
            Decider::Governor(limiter) => Ok(limiter.check_key(&subject.to_owned()).is_ok()),
        }
    }

    /// Store calls that failed or timed out so far (reposmith sides only).
    pub(crate) fn failures(&self) -> u64 {
        match self {
            Decider::Reposmith { limiter, .. } => limiter.stats().store_failures,
            _ => 0,
        }
    }
}

/// The limiter's options: fail closed, as for limits that protect money,
/// with a 1 s response timeout instead of 50 ms. The bench measures the
/// store's latency; on a loaded 2-core machine a 50 ms stall would turn
/// into fast fail-closed denials and flatter the rate. Failures are counted
/// and printed, and a run with any is marked.
fn options() -> LimiterOptions {
    LimiterOptions::fail_closed()
        .prefix("reposmith-bench")
        .response_timeout(Duration::from_secs(1))
}
