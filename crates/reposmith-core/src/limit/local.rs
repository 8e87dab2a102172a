//! [`LocalLimitStore`]: the limits in this process's memory, with the same
//! semantics as the Redis script. A fail-open limiter falls back to one
//! holding each process to its share of every limit; it also serves tests
//! and single-process tools.
//!
//! Written here rather than taken from `governor`: the limiter needs every
//! limit of a policy judged and charged all-or-nothing (governor charges
//! each limiter on its own), calendar quotas, leases and refunds, with the
//! same arithmetic as the server script ([`super::gcra`]), which governor's
//! does not share.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::decision::Lease;
use super::gcra::{Gcra, Step, quota_step, window_of};
use super::spec::{Kind, Limit, Policy, Unit, Window};
use super::store::{Admit, Admitted, LimitStore, Operation, Reconciled, Standing};
use crate::Result;
use crate::repository::BoxFuture;

/// Limits in process memory. With `share` above 1 every limit is divided
/// by it (rounded down, at least 1): the share one of that many processes
/// may use while they cannot coordinate.
#[derive(Debug)]
pub struct LocalLimitStore {
    share: u64,
    capacity: usize,
    clock: Clock,
    subjects: Mutex<HashMap<(String, String), Subject>>,
}

/// A monotonic µs clock anchored to the wall clock once, so quota windows
/// follow the calendar and rates never see the clock step.
#[derive(Debug)]
struct Clock {
    started: Instant,
    started_us: i64,
}

impl Clock {
    fn new() -> Clock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            started: Instant::now(),
            started_us: i64::try_from(wall.as_micros()).unwrap_or(0),
        }
    }

    fn now_us(&self) -> i64 {
        self.started_us + i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX / 2)
    }
}

#[derive(Debug, Default)]
struct Subject {
    /// Per rate limit: TAT offset and when it was written.
    rates: HashMap<String, (f64, i64)>,
    /// Per quota: window number, units used in it, and the window's end.
    quotas: HashMap<String, (i64, u64, i64)>,
    /// Permit id → expiry.
    permits: HashMap<String, i64>,
    /// Reservation id → what settling it needs.
    reservations: HashMap<String, Reservation>,
}

/// A reservation as the store keeps it.
#[derive(Debug, Clone)]
struct Reservation {
    expires: i64,
    estimate: u64,
    at: i64,
    /// Per rate limit counting cost: its absolute TAT right after the
    /// reservation. A refund gives back at most what is still ahead of
    /// now of that TAT: a charge that has already drained cannot be
    /// returned twice.
    tat_ends: Vec<(String, f64)>,
}

impl Subject {
    fn prune(&mut self, now: i64) {
        self.permits.retain(|_, expires| *expires > now);
        self.reservations.retain(|_, r| r.expires > now);
    }

    /// Nothing left that affects a decision.
    fn is_idle(&self, now: i64) -> bool {
        self.permits.is_empty()
            && self.reservations.is_empty()
            && self
                .rates
                .values()
                .all(|(ahead, at)| *ahead <= (now - at) as f64)
            && self
                .quotas
                .values()
                .all(|(_, used, end)| *used == 0 || *end <= now)
    }
}

impl LocalLimitStore {
    /// A store holding every limit in full (one process).
    pub fn new() -> LocalLimitStore {
        LocalLimitStore::shared_by(1, 100_000)
    }

    /// A store holding each limit divided by `processes`, tracking at most
    /// `capacity` subjects. When full, idle subjects are dropped; if that is
    /// not enough, arbitrary ones, down to nine tenths of the capacity (a
    /// dropped subject's limits start full again: that can only admit more).
    pub fn shared_by(processes: u32, capacity: usize) -> LocalLimitStore {
        LocalLimitStore {
            share: u64::from(processes.max(1)),
            capacity: capacity.max(1),
            clock: Clock::new(),
            subjects: Mutex::new(HashMap::new()),
        }
    }

    /// This store's clock, µs since the Unix epoch.
    pub fn now_us(&self) -> i64 {
        self.clock.now_us()
    }

    fn scaled(&self, n: u64) -> u64 {
        (n / self.share).max(1)
    }

    fn gcra(&self, limit: &Limit) -> Option<Gcra> {
        match limit.kind() {
            Kind::Rate {
                limit: l,
                period,
                burst,
            } => Some(Gcra::new(self.scaled(l), period, self.scaled(burst))),
            _ => None,
        }
    }

    fn subjects(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Subject>> {
        self.subjects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn judge(&self, limit: &Limit, state: &mut Subject, charge: u64, now: i64) -> Step {
        // A share of a limit can be smaller than a cost the whole limit
        // admits: such a charge takes the whole share, so it waits for an
        // idle share instead of forever.
        let charge = charge.min(self.scaled(limit.capacity()));
        match limit.kind() {
            Kind::Rate { .. } => {
                let gcra = self.gcra(limit).unwrap_or(Gcra {
                    interval_us: 1.0,
                    tolerance_us: 1.0,
                });
                let (ahead, at) = state.rates.get(limit.name()).copied().unwrap_or((0.0, now));
                gcra.step(Gcra::decay(ahead, (now - at) as f64), charge)
            }
            Kind::Quota { limit: l, window } => {
                let (id, end) = current_window(state, limit.name(), window, now);
                let used = match state.quotas.get(limit.name()) {
                    Some((w, used, _)) if *w == id => *used,
                    _ => 0,
                };
                let ends_in = u64::try_from(end - now).unwrap_or(0);
                quota_step(self.scaled(l), used, charge, ends_in)
            }
            Kind::Concurrency { max } => {
                let held = state.permits.len() as u64;
                let max = self.scaled(max);
                let first_end = state.permits.values().min().copied().unwrap_or(now);
                let wait = u64::try_from(first_end - now).unwrap_or(0);
                if held < max {
                    Step {
                        admitted: true,
                        state: (held + 1) as f64,
                        remaining: max - held - 1,
                        retry_after_us: 0,
                        reset_after_us: wait,
                    }
                } else {
                    Step {
                        admitted: false,
                        state: held as f64,
                        remaining: 0,
                        retry_after_us: wait.max(1),
                        reset_after_us: wait,
                    }
                }
            }
        }
    }

    fn apply(limit: &Limit, state: &mut Subject, step: &Step, now: i64) {
        match limit.kind() {
            Kind::Rate { .. } => {
                state
                    .rates
                    .insert(limit.name().to_owned(), (step.state, now));
            }
            Kind::Quota { window, .. } => {
                let (id, end) = current_window(state, limit.name(), window, now);
                state
                    .quotas
                    .insert(limit.name().to_owned(), (id, step.state as u64, end));
            }
            Kind::Concurrency { .. } => {}
        }
    }

    fn make_room(&self, subjects: &mut HashMap<(String, String), Subject>, now: i64) {
        if subjects.len() < self.capacity {
            return;
        }
        subjects.retain(|_, s| {
            s.prune(now);
            !s.is_idle(now)
        });
        let keep = self.capacity - self.capacity.div_ceil(10);
        if subjects.len() > keep {
            let excess: Vec<_> = subjects.keys().skip(keep).cloned().collect();
            for key in excess {
                subjects.remove(&key);
            }
        }
    }

    fn admit_now(&self, request: &Admit<'_>) -> Admitted {
        let now = self.now_us();
        let mut subjects = self.subjects();
        let key = (request.policy.name().to_owned(), request.subject.to_owned());
        if !subjects.contains_key(&key) {
            self.make_room(&mut subjects, now);
        }
        let state = subjects.entry(key).or_default();
        state.prune(now);
        let limits = request.policy.limits();
        let steps: Vec<(usize, Step)> = (0..limits.len())
            .filter(|i| request.judges(*i))
            .map(|i| {
                let step = self.judge(&limits[i], state, limits[i].charge(request.cost), now);
                (i, step)
            })
            .collect();
        let admitted = steps.iter().all(|(_, s)| s.admitted);
        let steps = if admitted {
            steps
        } else {
            self.uncharged(request, state, steps, now)
        };
        let mut lease_expires_at_us = None;
        if admitted {
            for (i, step) in &steps {
                Self::apply(&limits[*i], state, step, now);
            }
            if request.takes_lease() {
                let expires = now + micros(request.lease_ttl);
                if request.policy.concurrency().is_some() {
                    state.permits.insert(request.lease_id.to_owned(), expires);
                }
                if request.operation == Operation::Reserve {
                    let tat_ends = cost_rates(request.policy)
                        .filter_map(|l| {
                            let (ahead, at) = state.rates.get(l.name())?;
                            Some((l.name().to_owned(), *at as f64 + ahead))
                        })
                        .collect();
                    let reservation = Reservation {
                        expires,
                        estimate: request.cost,
                        at: now,
                        tat_ends,
                    };
                    state
                        .reservations
                        .insert(request.lease_id.to_owned(), reservation);
                }
                lease_expires_at_us = Some(expires);
            }
        }
        Admitted {
            admitted,
            standings: steps
                .iter()
                .map(|(i, s)| Standing {
                    index: *i,
                    admitted: s.admitted,
                    remaining: s.remaining,
                    retry_after_us: s.retry_after_us,
                    reset_after_us: s.reset_after_us,
                })
                .collect(),
            now_us: now,
            lease_expires_at_us,
        }
    }

    /// Refused as a whole: limits that would have admitted report what
    /// they have now (a zero charge), since nothing was charged.
    fn uncharged(
        &self,
        request: &Admit<'_>,
        state: &mut Subject,
        steps: Vec<(usize, Step)>,
        now: i64,
    ) -> Vec<(usize, Step)> {
        let limits = request.policy.limits();
        steps
            .into_iter()
            .map(|(i, step)| {
                if !step.admitted {
                    return (i, step);
                }
                let now_step = match limits[i].kind() {
                    Kind::Concurrency { .. } => Step {
                        remaining: step.remaining + 1,
                        ..step
                    },
                    _ => self.judge(&limits[i], state, 0, now),
                };
                (i, now_step)
            })
            .collect()
    }

    fn reconcile_now(&self, policy: &Policy, lease: &Lease, actual: u64) -> Reconciled {
        let now = self.now_us();
        let mut subjects = self.subjects();
        let key = (policy.name().to_owned(), lease.subject.clone());
        let Some(state) = subjects.get_mut(&key) else {
            return Reconciled::new(false, 0);
        };
        state.prune(now);
        state.permits.remove(&lease.id);
        let Some(reservation) = state.reservations.remove(&lease.id) else {
            return Reconciled::new(false, 0);
        };
        let delta = signed(actual) - signed(reservation.estimate);
        for limit in policy.limits().iter().filter(|l| l.unit() == Unit::Cost) {
            match limit.kind() {
                Kind::Rate { .. } => self.settle_rate(limit, state, &reservation, delta, now),
                Kind::Quota { window, .. } => {
                    settle_quota(limit, window, state, &reservation, delta, now)
                }
                Kind::Concurrency { .. } => {}
            }
        }
        Reconciled::new(true, delta)
    }

    /// Charges `delta` units to a rate, or refunds at most what of the
    /// reservation's charge is still ahead of now.
    fn settle_rate(
        &self,
        limit: &Limit,
        state: &mut Subject,
        reservation: &Reservation,
        delta: i64,
        now: i64,
    ) {
        let Some(gcra) = self.gcra(limit) else { return };
        let (ahead, written) = state.rates.get(limit.name()).copied().unwrap_or((0.0, now));
        let ahead = Gcra::decay(ahead, (now - written) as f64);
        let mut change = delta as f64 * gcra.interval_us;
        if delta < 0 {
            let tat_end = reservation
                .tat_ends
                .iter()
                .find(|(name, _)| name == limit.name())
                .map_or(0.0, |(_, end)| *end);
            change = change.max(-(tat_end - now as f64).max(0.0));
        }
        let settled = (ahead + change).max(0.0);
        state.rates.insert(limit.name().to_owned(), (settled, now));
    }
}

impl Default for LocalLimitStore {
    fn default() -> Self {
        LocalLimitStore::new()
    }
}

/// The quota window to count in: the one holding `now`, unless the count
/// is already in a later one (the clock stepped back): windows never go
/// back, so a step back cannot reset a count.
fn current_window(state: &Subject, name: &str, window: Window, now: i64) -> (i64, i64) {
    let (id, end) = window_of(window, now);
    match state.quotas.get(name) {
        Some((w, _, e)) if *w > id => (*w, *e),
        _ => (id, end),
    }
}

/// Charges `delta` units to a quota's current window; a refund goes back
/// only to the window the reservation was taken in.
fn settle_quota(
    limit: &Limit,
    window: Window,
    state: &mut Subject,
    reservation: &Reservation,
    delta: i64,
    now: i64,
) {
    let (current, end) = current_window(state, limit.name(), window, now);
    let (reserved_in, _) = window_of(window, reservation.at);
    let used = match state.quotas.get(limit.name()) {
        Some((w, used, _)) if *w == current => *used,
        _ => 0,
    };
    let used = if reserved_in == current || delta > 0 {
        used.saturating_add_signed(delta)
    } else {
        used
    };
    state
        .quotas
        .insert(limit.name().to_owned(), (current, used, end));
}

/// The policy's rate limits that count cost (the ones a reservation's
/// estimate is charged to).
fn cost_rates(policy: &Policy) -> impl Iterator<Item = &Limit> {
    policy
        .limits()
        .iter()
        .filter(|l| l.unit() == Unit::Cost && matches!(l.kind(), Kind::Rate { .. }))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl LimitStore for LocalLimitStore {
    fn admit<'a>(&'a self, request: &'a Admit<'a>) -> BoxFuture<'a, Result<Admitted>> {
        let admitted = self.admit_now(request);
        Box::pin(async move { Ok(admitted) })
    }

    fn reconcile<'a>(
        &'a self,
        policy: &'a Policy,
        lease: &'a Lease,
        actual: u64,
    ) -> BoxFuture<'a, Result<Reconciled>> {
        let reconciled = self.reconcile_now(policy, lease, actual);
        Box::pin(async move { Ok(reconciled) })
    }

    fn renew<'a>(
        &'a self,
        policy: &'a Policy,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<i64>>> {
        let now = self.now_us();
        let expires = now + micros(ttl);
        let mut subjects = self.subjects();
        let renewed = subjects
            .get_mut(&(policy.name().to_owned(), lease.subject.clone()))
            .and_then(|state| {
                state.prune(now);
                let mut found = false;
                if let Some(e) = state.permits.get_mut(&lease.id) {
                    *e = expires;
                    found = true;
                }
                if let Some(r) = state.reservations.get_mut(&lease.id) {
                    r.expires = expires;
                    found = true;
                }
                found.then_some(expires)
            });
        Box::pin(async move { Ok(renewed) })
    }

    fn release<'a>(&'a self, policy: &'a Policy, lease: &'a Lease) -> BoxFuture<'a, Result<bool>> {
        let now = self.now_us();
        let mut subjects = self.subjects();
        let released = subjects
            .get_mut(&(policy.name().to_owned(), lease.subject.clone()))
            .is_some_and(|state| {
                state.prune(now);
                let permit = state.permits.remove(&lease.id).is_some();
                let reservation = state.reservations.remove(&lease.id).is_some();
                permit || reservation
            });
        Box::pin(async move { Ok(released) })
    }

    fn reset<'a>(&'a self, policy: &'a Policy, subject: &'a str) -> BoxFuture<'a, Result<()>> {
        self.subjects()
            .remove(&(policy.name().to_owned(), subject.to_owned()));
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::spec::Window;

    fn request<'a>(policy: &'a Policy, cost: u64, operation: Operation, id: &'a str) -> Admit<'a> {
        Admit {
            policy,
            subject: "tenant-1",
            cost,
            operation,
            lease_id: id,
            lease_ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn nothing_is_charged_when_one_limit_refuses() {
        let store = LocalLimitStore::new();
        let policy = Policy::new("p")
            .with(Limit::requests("rpm", 100, Duration::from_secs(60)))
            .with(Limit::tokens("tpm", 1_000, Duration::from_secs(60)));
        let first = store.admit_now(&request(&policy, 900, Operation::Check, "a"));
        assert!(first.standings.iter().all(|s| s.admitted));
        let second = store.admit_now(&request(&policy, 200, Operation::Check, "b"));
        assert!(!second.standings[1].admitted && second.standings[0].admitted);
        assert_eq!(
            second.standings[0].remaining, 99,
            "what rpm has now: nothing charged"
        );
        let third = store.admit_now(&request(&policy, 100, Operation::Check, "c"));
        assert!(third.standings.iter().all(|s| s.admitted));
        assert_eq!(
            third.standings[0].remaining, 98,
            "the refused call took no request"
        );
    }

    #[test]
    fn reservations_reconcile_and_permits_free_on_release() {
        let store = LocalLimitStore::new();
        let policy = Policy::new("p")
            .with(Limit::tokens("tpm", 1_000, Duration::from_secs(60)))
            .with(Limit::quota("daily", 5_000, Window::Day))
            .with(Limit::concurrency("inflight", 1));
        let admitted = store.admit_now(&request(&policy, 800, Operation::Reserve, "r1"));
        assert!(admitted.lease_expires_at_us.is_some());
        let busy = store.admit_now(&request(&policy, 1, Operation::Check, "x"));
        assert!(
            !busy.standings[2].admitted,
            "the reservation holds the only permit"
        );
        let lease = Lease {
            subject: "tenant-1".into(),
            id: "r1".into(),
            expires_at_us: 0,
            reserved: 800,
            permit: true,
            local: true,
        };
        let done = store.reconcile_now(&policy, &lease, 300);
        assert_eq!((done.settled, done.charged), (true, -500));
        let next = store.admit_now(&request(&policy, 700, Operation::Check, "y"));
        assert!(next.standings.iter().all(|s| s.admitted), "{next:?}");
        assert_eq!(next.standings[1].remaining, 4_000);
        assert!(
            !store.reconcile_now(&policy, &lease, 1).settled,
            "only once"
        );
    }

    #[test]
    fn a_late_refund_gives_back_only_what_has_not_drained() {
        let store = LocalLimitStore::new();
        let policy = Policy::new("p").with(Limit::tokens("t", 100, Duration::from_millis(100)));
        let id = uuid::Uuid::now_v7().to_string();
        assert!(
            store
                .admit_now(&request(&policy, 100, Operation::Reserve, &id))
                .admitted
        );
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            store
                .admit_now(&request(&policy, 100, Operation::Check, "x"))
                .admitted
        );
        let lease = Lease {
            subject: "tenant-1".into(),
            id,
            expires_at_us: 0,
            reserved: 100,
            permit: false,
            local: true,
        };
        assert_eq!(store.reconcile_now(&policy, &lease, 0).charged, -100);
        assert!(
            !store
                .admit_now(&request(&policy, 100, Operation::Check, "y"))
                .admitted,
            "the drained charge was not given back a second time"
        );
    }

    #[test]
    fn a_cost_above_a_share_waits_for_an_idle_share_not_forever() {
        let store = LocalLimitStore::shared_by(4, 10);
        let policy = Policy::new("p").with(Limit::tokens("tpm", 1_000, Duration::from_secs(60)));
        let first = store.admit_now(&request(&policy, 600, Operation::Check, "a"));
        assert!(
            first.admitted,
            "600 > the 250 share, taken as the whole share"
        );
        let second = store.admit_now(&request(&policy, 600, Operation::Check, "b"));
        assert!(!second.admitted);
        assert!(
            second.standings[0].retry_after_us <= 60_000_000,
            "a finite wait (the share drains in a minute): {second:?}"
        );
    }

    #[test]
    fn a_share_divides_every_limit() {
        let store = LocalLimitStore::shared_by(4, 10);
        let policy = Policy::new("p").with(Limit::requests("rpm", 10, Duration::from_secs(3600)));
        let admitted = (0..10)
            .filter(|i| {
                let id = i.to_string();
                store
                    .admit_now(&request(&policy, 1, Operation::Check, &id))
                    .standings[0]
                    .admitted
            })
            .count();
        assert_eq!(admitted, 2, "10 / 4 processes");
    }
}
