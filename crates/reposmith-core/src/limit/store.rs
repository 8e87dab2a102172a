//! The seam between a [`Limiter`](super::Limiter) and where limit state
//! lives: [`LimitStore`]. Redis implements it (`reposmith-redis`), so does
//! [`LocalLimitStore`](super::LocalLimitStore) in process.
//!
//! # The contract
//!
//! * [`LimitStore::admit`] judges every limit the operation covers against
//!   one reading of the store's clock and, only when all admit, charges them
//!   all and records the lease, in one atomic step: nothing is charged when
//!   any limit refuses.
//! * Leases end on the store's clock. An expired permit no longer counts
//!   against its concurrency limit; an expired reservation is settled at its
//!   estimate (the estimate stays charged) and can no longer be reconciled.
//! * Every piece of state expires once it no longer matters (a rate once
//!   its TAT has passed, a quota at its window's end, leases at their
//!   expiry), so an abandoned subject leaves nothing behind.

use std::fmt;
use std::time::Duration;

use super::decision::Lease;
use super::spec::Policy;
use crate::Result;
use crate::repository::BoxFuture;

/// What an admission takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Charges the cost to every rate and quota limit and, when the policy
    /// has a concurrency limit, takes a permit.
    Check,
    /// As `Check`, and records the cost as a reservation to reconcile.
    Reserve,
    /// Takes a concurrency permit only (the rate and quota limits are
    /// neither judged nor charged).
    Acquire,
}

/// One admission request.
#[derive(Debug, Clone)]
pub struct Admit<'a> {
    /// The limits.
    pub policy: &'a Policy,
    /// Whom they apply to (validated).
    pub subject: &'a str,
    /// The cost (validated against every limit's capacity; 1 for acquire).
    pub cost: u64,
    /// What the admission takes.
    pub operation: Operation,
    /// The id a lease gets, if one is taken.
    pub lease_id: &'a str,
    /// How long a lease lasts.
    pub lease_ttl: Duration,
}

impl Admit<'_> {
    /// Whether this admission takes a lease: a reservation always, a check
    /// or an acquire when the policy has a concurrency limit.
    pub fn takes_lease(&self) -> bool {
        self.operation == Operation::Reserve || self.policy.concurrency().is_some()
    }

    /// Whether this operation judges limit `index` of the policy.
    pub fn judges(&self, index: usize) -> bool {
        let is_permit = self
            .policy
            .limits()
            .get(index)
            .is_some_and(|l| matches!(l.kind(), super::spec::Kind::Concurrency { .. }));
        self.operation != Operation::Acquire || is_permit
    }
}

/// One limit's standing as a store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The index of the limit in the policy.
    pub index: usize,
    /// Whether it admits the charge.
    pub admitted: bool,
    /// Units left (after the charge when everything was admitted).
    pub remaining: u64,
    /// µs until it would admit the charge.
    pub retry_after_us: u64,
    /// µs until it is back to full capacity.
    pub reset_after_us: u64,
}

/// A store's answer to [`LimitStore::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Whether every judged limit admitted and everything was charged (the
    /// store says so; the limiter checks it against the standings).
    pub admitted: bool,
    /// The judged limits, in policy order.
    pub standings: Vec<Standing>,
    /// The store's clock at the decision, µs since the Unix epoch.
    pub now_us: i64,
    /// When the lease ends (when one was taken and everything admitted).
    pub lease_expires_at_us: Option<i64>,
}

/// What reconciling a reservation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconciled {
    /// False when the reservation had already ended (expired, released or
    /// reconciled): it stays settled at its estimate and nothing changed.
    pub settled: bool,
    /// Units charged on top of the estimate (negative: refunded).
    pub charged: i64,
}

impl Reconciled {
    /// A store's answer: whether the reservation was still open, and the
    /// units charged on top of its estimate.
    pub fn new(settled: bool, charged: i64) -> Reconciled {
        Reconciled { settled, charged }
    }
}

/// Where limit state lives. Implementations must honour the module's
/// contract; every call is bounded by the limiter's response timeout.
pub trait LimitStore: Send + Sync + fmt::Debug + 'static {
    /// Judges and, when all admit, charges (see [`Admit`]).
    fn admit<'a>(&'a self, request: &'a Admit<'a>) -> BoxFuture<'a, Result<Admitted>>;

    /// Settles reservation `lease` at `actual`: charges or refunds the
    /// difference from its estimate and ends the lease (with its permit).
    fn reconcile<'a>(
        &'a self,
        policy: &'a Policy,
        lease: &'a Lease,
        actual: u64,
    ) -> BoxFuture<'a, Result<Reconciled>>;

    /// Extends `lease` to `ttl` from now; its new expiry, or `None` when it
    /// had already ended.
    fn renew<'a>(
        &'a self,
        policy: &'a Policy,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<i64>>>;

    /// Ends `lease` (a reservation stays charged at its estimate); false
    /// when it had already ended.
    fn release<'a>(&'a self, policy: &'a Policy, lease: &'a Lease) -> BoxFuture<'a, Result<bool>>;

    /// Forgets everything about `subject` under `policy` (an operator's
    /// reset: its limits are full again and its leases gone).
    fn reset<'a>(&'a self, policy: &'a Policy, subject: &'a str) -> BoxFuture<'a, Result<()>>;
}
