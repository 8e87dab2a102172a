//! Rate limits and quotas, backend-free: a [`Policy`] of [`Limit`]s
//! (GCRA rates with a burst, calendar quotas, concurrency permits), the
//! [`Limiter`] that checks them all for one subject in one atomic step
//! through a [`LimitStore`] (Redis, in `reposmith-redis`), token
//! reservations reconciled with the real usage, and the [`Decision`] with
//! the IETF `RateLimit` headers.
//!
//! # What it promises
//!
//! * All or nothing: a call is admitted only when every limit of the policy
//!   admits it, and nothing is charged when one refuses.
//! * One clock: every decision reads the store's clock (Redis `TIME`), so
//!   application servers whose clocks disagree cannot admit more.
//! * Exact to one call: a rate of `limit` per `period` with burst `b`
//!   admits at most `b + elapsed / (period / limit)` units over any span.
//! * Nothing outlives its use: permits and reservations are leases on the
//!   store's clock; a crashed holder's permit frees itself at its expiry,
//!   its reservation is then settled at the estimate; every key expires.
//! * Bounded waits: every store call has a response timeout; a failing
//!   store opens a circuit breaker and the [`OnFailure`] policy decides:
//!   deny with [`Denial::Unavailable`], or admit within this process's share
//!   of each limit.

mod decision;
mod deny;
pub mod gcra;
mod limiter;
mod local;
mod options;
mod spec;
pub mod store;

pub use decision::{Decision, Denial, Lease, LimitStatus, Source};
pub use limiter::{Limiter, LimiterStats, MAX_SUBJECT, check_subject};
pub use local::LocalLimitStore;
pub use options::{LimiterOptions, OnFailure};
pub use spec::{
    Kind, Limit, MAX_AMOUNT, MAX_NAME, MAX_PERIOD, MAX_SPAN, Policy, Unit, Window, check_name,
};
pub use store::{Admit, Admitted, LimitStore, Operation, Reconciled, Standing};

use crate::cache::escape;

/// The keys one subject's state lives under. They share one hash tag (the
/// braces), so on a Redis Cluster they sit in one slot and a script may
/// touch them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKeys {
    /// A hash: per rate limit its TAT offset and when it was written, per
    /// quota its window and count.
    pub state: String,
    /// A sorted set of permit ids scored by expiry (µs).
    pub permits: String,
    /// A sorted set of reservation ids scored by expiry (µs).
    pub reservations: String,
    /// A hash of reservation id → `estimate:reserved_at_us`.
    pub estimates: String,
}

impl SubjectKeys {
    /// `{prefix:l:policy:subject}:s` and its siblings; the subject is
    /// escaped (every byte outside `A-Z a-z 0-9 . _ -` as `%XX`), so no
    /// subject can close the hash tag or form a pattern.
    pub fn new(prefix: &str, policy: &str, subject: &str) -> SubjectKeys {
        let tag = format!("{{{prefix}:l:{policy}:{}}}", escape(subject));
        SubjectKeys {
            state: format!("{tag}:s"),
            permits: format!("{tag}:p"),
            reservations: format!("{tag}:r"),
            estimates: format!("{tag}:e"),
        }
    }

    /// The four keys, in the order the scripts declare them.
    pub fn all(&self) -> [&str; 4] {
        [
            &self.state,
            &self.permits,
            &self.reservations,
            &self.estimates,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_subjects_stay_inside_their_tag() {
        let keys = SubjectKeys::new("app", "chat", "a}{b*:c");
        assert_eq!(keys.state, "{app:l:chat:a%7D%7Bb%2A%3Ac}:s");
        assert!(
            keys.all()
                .iter()
                .all(|k| k.starts_with("{app:l:chat:a%7D%7Bb%2A%3Ac}:"))
        );
    }
}
