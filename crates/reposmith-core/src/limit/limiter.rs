//! [`Limiter`]: one policy's limits checked together for a subject, through
//! a [`LimitStore`], with a failure policy, a circuit breaker and a deny
//! cache in front of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::decision::{Decision, Lease, LimitStatus, Source};
use super::deny::DenyCache;
use super::local::LocalLimitStore;
use super::options::{LimiterOptions, OnFailure};
use super::spec::{MAX_AMOUNT, Policy};
use super::store::{Admit, Admitted, LimitStore, Operation, Reconciled};
use crate::breaker::Breaker;
use crate::{Error, Result};

/// The longest subject, in bytes.
pub const MAX_SUBJECT: usize = 512;

/// Checks a [`Policy`]'s limits for subjects (tenants, API keys, models).
/// Cloning shares it.
///
/// ```no_run
/// # async fn demo(limiter: reposmith_core::limit::Limiter) -> reposmith_core::Result<()> {
/// // Before the model call: reserve the prompt's tokens plus max_tokens.
/// let decision = limiter.reserve("tenant-42", 1_200 + 800).await?;
/// if !decision.allowed {
///     // 429 with decision.headers(); retry after decision.retry_after.
///     return Ok(());
/// }
/// let lease = decision.lease.expect("a reservation holds a lease");
/// // ... call the model; it reports the tokens it really used ...
/// limiter.reconcile(&lease, 1_640).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: Policy,
    store: Arc<dyn LimitStore>,
    options: LimiterOptions,
    breaker: Breaker,
    denials: DenyCache,
    /// The fail-open fallback (none when failing closed).
    local: Option<LocalLimitStore>,
    stats: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    store_failures: AtomicU64,
    local_decisions: AtomicU64,
    deny_cache_hits: AtomicU64,
}

/// Counts since the limiter was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LimiterStats {
    /// Store calls that failed or timed out.
    pub store_failures: u64,
    /// Decisions the fail-open fallback made.
    pub local_decisions: u64,
    /// Denials answered from the deny cache.
    pub deny_cache_hits: u64,
}

impl Limiter {
    /// A limiter for `policy` over `store`, after validating both the
    /// policy and the options.
    pub fn new(
        policy: Policy,
        store: Arc<dyn LimitStore>,
        options: LimiterOptions,
    ) -> Result<Limiter> {
        policy.validate()?;
        options.validate()?;
        let local = match options.on_failure {
            OnFailure::Open { processes } => Some(LocalLimitStore::shared_by(
                processes,
                options.local_capacity,
            )),
            OnFailure::Closed => None,
        };
        Ok(Limiter {
            inner: Arc::new(Inner {
                breaker: Breaker::new(options.breaker_failures, options.breaker_cooldown),
                denials: DenyCache::new(options.deny_cache_capacity, options.deny_cache_max_age),
                local,
                policy,
                store,
                options,
                stats: Counters::default(),
            }),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The options.
    pub fn options(&self) -> &LimiterOptions {
        &self.inner.options
    }

    /// Whether the breaker is open: decisions are made without the store.
    pub fn is_degraded(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// Counts since the limiter was built.
    pub fn stats(&self) -> LimiterStats {
        let s = &self.inner.stats;
        LimiterStats {
            store_failures: s.store_failures.load(Ordering::Relaxed),
            local_decisions: s.local_decisions.load(Ordering::Relaxed),
            deny_cache_hits: s.deny_cache_hits.load(Ordering::Relaxed),
        }
    }

    /// Judges one call of `cost` against every limit at once and charges
    /// them all only if all admit (a call counts 1 against limits counting
    /// calls, `cost` against those counting cost). With a concurrency limit
    /// an admitted call holds a permit in [`Decision::lease`]: give it back
    /// with [`Limiter::release`].
    ///
    /// Errors: an invalid subject or a cost of 0
    /// ([`Error::InvalidInput`]), a cost some limit can never admit
    /// ([`Error::ExceedsCapacity`]). A store failure is not an error: the
    /// failure policy decides.
    pub async fn check(&self, subject: &str, cost: u64) -> Result<Decision> {
        self.decide(subject, cost, Operation::Check).await
    }

    /// As [`Limiter::check`] for a cost that is an estimate (a prompt's
    /// tokens plus `max_tokens`): the admitted call holds a reservation in
    /// [`Decision::lease`]; [`Limiter::reconcile`] it with the real cost.
    /// Unreconciled, it ends at its lease's expiry settled at the estimate.
    pub async fn reserve(&self, subject: &str, estimate: u64) -> Result<Decision> {
        self.decide(subject, estimate, Operation::Reserve).await
    }

    /// Takes a concurrency permit only (rates and quotas are not charged).
    /// Errors with [`Error::Config`] when the policy has no concurrency limit.
    pub async fn acquire(&self, subject: &str) -> Result<Decision> {
        if self.inner.policy.concurrency().is_none() {
            return Err(Error::config(
                format!("rate limit policy {}", self.inner.policy.name()),
                "acquire needs a concurrency limit (Limit::concurrency)",
            ));
        }
        self.decide(subject, 1, Operation::Acquire).await
    }

    /// Settles a reservation at `actual`: the difference from the estimate
    /// is charged, or refunded (a refund gives back only what of the
    /// estimate's charge has not drained yet, and only to the quota window
    /// it was taken in), and the lease ends, permit included. A reservation
    /// that already ended (expired, released or reconciled) changes nothing
    /// (`settled: false`): it stays charged at its estimate, and usage above
    /// the estimate reported after the lease's expiry is not charged, so
    /// [`Limiter::renew`] calls that outlast the lease TTL.
    ///
    /// Errors: `lease` holds no reservation ([`Error::InvalidInput`]: a
    /// permit alone is given back with [`Limiter::release`]), a store
    /// failure or timeout (the outcome is then unknown: retrying is safe,
    /// a second settlement finds the reservation gone).
    pub async fn reconcile(&self, lease: &Lease, actual: u64) -> Result<Reconciled> {
        check_lease(lease)?;
        check_amount(actual, "actual")?;
        if lease.reserved == 0 {
            return Err(Error::invalid(
                "Limiter",
                "lease",
                "it holds no reservation (a check or an acquire); give it back with release",
            ));
        }
        let inner = &self.inner;
        if let Some(local) = self.local_for(lease) {
            return local.reconcile(&inner.policy, lease, actual).await;
        }
        let call = inner.store.reconcile(&inner.policy, lease, actual);
        let reconciled = self.bounded("reconcile", call).await?;
        if reconciled.charged < 0 {
            // A refund can make room before a cached denial's retry-after.
            inner.denials.forget(lease.subject());
        }
        Ok(reconciled)
    }

    /// Extends `lease` to a full lease TTL from now (updating its expiry);
    /// false when it had already ended (its permit may be someone else's).
    pub async fn renew(&self, lease: &mut Lease) -> Result<bool> {
        check_lease(lease)?;
        let inner = &self.inner;
        let ttl = inner.options.lease_ttl;
        let renewed = match self.local_for(lease) {
            Some(local) => local.renew(&inner.policy, lease, ttl).await?,
            None => {
                self.bounded("renew", inner.store.renew(&inner.policy, lease, ttl))
                    .await?
            }
        };
        if let Some(expires) = renewed {
            lease.expires_at_us = expires;
        }
        Ok(renewed.is_some())
    }

    /// Ends `lease`: its permit frees, its reservation stays charged at the
    /// estimate. False when it had already ended. A store failure is
    /// returned (retrying is safe); the lease then ends at its expiry.
    pub async fn release(&self, lease: &Lease) -> Result<bool> {
        check_lease(lease)?;
        let inner = &self.inner;
        if let Some(local) = self.local_for(lease) {
            return local.release(&inner.policy, lease).await;
        }
        self.bounded("release", inner.store.release(&inner.policy, lease))
            .await
    }

    /// Forgets `subject`'s state: its limits are full and its leases gone.
    pub async fn reset(&self, subject: &str) -> Result<()> {
        check_subject(subject)?;
        let inner = &self.inner;
        inner.denials.forget(subject);
        if let Some(local) = &inner.local {
            local.reset(&inner.policy, subject).await?;
        }
        self.bounded("reset", inner.store.reset(&inner.policy, subject))
            .await
    }

    fn local_for(&self, lease: &Lease) -> Option<&LocalLimitStore> {
        lease.local.then_some(self.inner.local.as_ref()).flatten()
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let after = self.inner.options.response_timeout;
        match tokio::time::timeout(after, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                backend: crate::Backend::Redis,
                operation,
                after,
            }),
        }
    }

    async fn decide(&self, subject: &str, cost: u64, operation: Operation) -> Result<Decision> {
        check_subject(subject)?;
        let inner = &self.inner;
        if operation != Operation::Acquire {
            inner.policy.check_cost(cost)?;
            if let Some(cached) = inner.denials.get(subject, cost) {
                inner.stats.deny_cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(cached);
            }
        }
        // Only a call that takes a lease needs an id (a UUID costs a clock
        // read and a format per call).
        let takes_lease = operation == Operation::Reserve || inner.policy.concurrency().is_some();
        let lease_id = match takes_lease {
            true => uuid::Uuid::now_v7().to_string(),
            false => String::new(),
        };
        let request = Admit {
            policy: &inner.policy,
            subject,
            cost,
            operation,
            lease_id: &lease_id,
            lease_ttl: inner.options.lease_ttl,
        };
        if !inner.breaker.allow() {
            return self
                .fallback(&request, "its circuit breaker is open".to_owned())
                .await;
        }
        let failure = match self
            .bounded("rate limit check", inner.store.admit(&request))
            .await
        {
            Ok(admitted) if !consistent(&request, &admitted) => Error::Backend {
                backend: crate::Backend::Redis,
                code: None,
                reason: format!("the limit store's answer does not fit the policy: {admitted:?}"),
            },
            Ok(admitted) => {
                inner.breaker.success();
                let decision = self.judged(&request, admitted, Source::Server, false);
                if !decision.allowed && operation != Operation::Acquire {
                    inner.denials.put(subject, cost, &decision);
                }
                return Ok(decision);
            }
            Err(error) => error,
        };
        inner.stats.store_failures.fetch_add(1, Ordering::Relaxed);
        if inner.breaker.failure() {
            tracing::warn!(policy = %inner.policy, error = %failure,
                "rate limit store failing: circuit breaker open");
        }
        if request.takes_lease() {
            self.release_in_background(subject, &lease_id);
        }
        self.fallback(&request, failure.to_string()).await
    }

    /// A failed or timed-out admission may still have run on the server
    /// and granted its lease: give it back (releasing an id the server
    /// never granted does nothing), bounded, without holding up the caller.
    fn release_in_background(&self, subject: &str, lease_id: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let limiter = self.clone();
        let lease = Lease {
            subject: subject.to_owned(),
            id: lease_id.to_owned(),
            expires_at_us: 0,
            reserved: 0,
            permit: true,
            local: false,
        };
        runtime.spawn(async move {
            let inner = &limiter.inner;
            let bound = inner
                .options
                .breaker_cooldown
                .max(inner.options.response_timeout);
            let release = inner.store.release(&inner.policy, &lease);
            if let Ok(Err(error)) = tokio::time::timeout(bound, release).await {
                tracing::debug!(%error, "could not give back the lease of a failed admission");
            }
        });
    }

    async fn fallback(&self, request: &Admit<'_>, reason: String) -> Result<Decision> {
        let inner = &self.inner;
        let Some(local) = &inner.local else {
            let wait = inner.options.breaker_cooldown;
            return Ok(Decision::unavailable(inner.policy.name(), reason, wait));
        };
        inner.stats.local_decisions.fetch_add(1, Ordering::Relaxed);
        let admitted = local.admit(request).await?;
        Ok(self.judged(request, admitted, Source::Local, true))
    }

    fn judged(
        &self,
        request: &Admit<'_>,
        admitted: Admitted,
        source: Source,
        local: bool,
    ) -> Decision {
        let policy = &self.inner.policy;
        let statuses: Vec<LimitStatus> = admitted
            .standings
            .iter()
            .filter_map(|s| {
                let limit = policy.limits().get(s.index)?;
                Some(LimitStatus::new(
                    limit,
                    s.admitted,
                    s.remaining,
                    s.retry_after_us,
                    s.reset_after_us,
                ))
            })
            .collect();
        let lease = admitted.lease_expires_at_us.map(|expires_at_us| Lease {
            subject: request.subject.to_owned(),
            id: request.lease_id.to_owned(),
            expires_at_us,
            reserved: if request.operation == Operation::Reserve {
                request.cost
            } else {
                0
            },
            permit: policy.concurrency().is_some(),
            local,
        });
        Decision::judged(
            policy.name(),
            statuses,
            lease,
            source,
            Some(admitted.now_us).filter(|_| !local),
        )
    }
}

/// Whether a store's answer covers exactly the limits the operation
/// judges, in order, and its verdict matches their standings.
fn consistent(request: &Admit<'_>, admitted: &Admitted) -> bool {
    let judged = (0..request.policy.limits().len()).filter(|i| request.judges(*i));
    let indexes = admitted.standings.iter().map(|s| s.index);
    let all = admitted.standings.iter().all(|s| s.admitted);
    judged.eq(indexes) && all == admitted.admitted
}

/// A lease the caller hands back: its subject valid, its id a UUID.
fn check_lease(lease: &Lease) -> Result<()> {
    check_subject(&lease.subject)?;
    if uuid::Uuid::try_parse(&lease.id).is_err() {
        return Err(Error::invalid("Limiter", "lease", "its id is not a UUID"));
    }
    Ok(())
}

/// A subject: 1 to [`MAX_SUBJECT`] bytes (any text; keys escape it). It
/// is stored as given, in key names and leases: pass a tenant id or a hash
/// of an API key, never a secret.
pub fn check_subject(subject: &str) -> Result<()> {
    if subject.is_empty() {
        return Err(Error::invalid("Limiter", "subject", "the subject is empty"));
    }
    if subject.len() > MAX_SUBJECT {
        return Err(Error::invalid(
            "Limiter",
            "subject",
            format!(
                "the subject is {} bytes; at most {MAX_SUBJECT} are accepted",
                subject.len()
            ),
        ));
    }
    Ok(())
}

fn check_amount(amount: u64, field: &'static str) -> Result<()> {
    if amount > MAX_AMOUNT {
        return Err(Error::invalid(
            "Limiter",
            field,
            format!("{amount} is above the maximum {MAX_AMOUNT}"),
        ));
    }
    Ok(())
}
