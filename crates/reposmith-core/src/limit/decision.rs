//! What a limiter answers: a [`Decision`] (admitted or not, why, when to
//! retry, each limit's standing, the HTTP headers) and, for admitted calls
//! that hold something, a [`Lease`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::spec::{Kind, Limit, Unit};

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The named limit is exhausted (the one that frees last when several are).
    Limit {
        /// The limit's name.
        name: String,
    },
    /// The limit store could not be asked (down, slow or its circuit
    /// breaker open) and the limiter fails closed.
    Unavailable {
        /// What went wrong, without secrets.
        reason: String,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::Limit { name } => write!(f, "limit {name} exhausted"),
            Denial::Unavailable { reason } => write!(f, "limit store unavailable: {reason}"),
        }
    }
}

/// Who made the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The shared limit store (Redis), on its clock: exact across processes.
    Server,
    /// The in-process fallback of a fail-open limiter while the store is
    /// unreachable: each process holds its share of each limit.
    Local,
    /// The local deny cache: the subject was denied by the store for at
    /// least this cost and its retry-after has not passed.
    DenyCache,
    /// No one: the store was unreachable and the limiter fails closed.
    Nobody,
}

/// One limit's standing after a decision.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LimitStatus {
    /// The limit's name.
    pub name: String,
    /// Its kind and parameters.
    pub kind: Kind,
    /// What it counts.
    pub unit: Unit,
    /// Whether this limit admitted the call (each limit is judged; the call
    /// is admitted only when all admit).
    pub admitted: bool,
    /// Units still available (after the charge, when admitted).
    pub remaining: u64,
    /// How long until this limit would admit the call (zero when it does).
    /// For a concurrency limit, until the earliest permit's lease ends: a
    /// release may free one sooner.
    pub retry_after: Duration,
    /// How long until this limit is back to full capacity.
    pub reset_after: Duration,
}

impl LimitStatus {
    pub(crate) fn new(
        limit: &Limit,
        admitted: bool,
        remaining: u64,
        retry_us: u64,
        reset_us: u64,
    ) -> Self {
        LimitStatus {
            name: limit.name().to_owned(),
            kind: limit.kind(),
            unit: limit.unit(),
            admitted,
            remaining,
            retry_after: Duration::from_micros(retry_us),
            reset_after: Duration::from_micros(reset_us),
        }
    }

    /// The most this limit admits at once (a rate's burst, a quota's limit,
    /// a concurrency limit's permits): the `q` of the headers.
    pub fn capacity(&self) -> u64 {
        self.kind.capacity()
    }
}

/// Something an admitted call holds until it ends: a concurrency permit, a
/// token reservation, or both. Give it back with
/// [`Limiter::release`](super::Limiter::release) or
/// [`Limiter::reconcile`](super::Limiter::reconcile); one never given back
/// ends at [`Lease::expires_at`] on the store's clock (a crashed holder's
/// permit frees itself; its reservation is settled at the estimate).
///
/// It serializes (serde), so the code that ends the call need not be the
/// code that started it: a streaming response finishing in another task,
/// or a job carrying the lease to reconcile when the model answers. The
/// store goes by the subject and the id; the estimate it settles against is
/// the one it recorded, not the one in a deserialized lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[must_use = "a lease holds a permit or a reservation until it is released, reconciled or expires"]
pub struct Lease {
    pub(crate) subject: String,
    pub(crate) id: String,
    pub(crate) expires_at_us: i64,
    pub(crate) reserved: u64,
    pub(crate) permit: bool,
    pub(crate) local: bool,
}

impl Lease {
    /// The subject it was granted to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Its id (unique; a UUID v7).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When it ends unless renewed, on the clock of the store that granted
    /// it (the Redis server's, or this process's for a local lease).
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(u64::try_from(self.expires_at_us).unwrap_or(0))
    }

    /// The estimate a reservation charged (0 for a permit alone).
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Whether it holds a concurrency permit.
    pub fn holds_permit(&self) -> bool {
        self.permit
    }

    /// Whether the in-process fallback granted it (the store was down).
    pub fn is_local(&self) -> bool {
        self.local
    }
}

/// A limiter's answer for one call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the call may go ahead.
    pub allowed: bool,
    /// The policy's name.
    pub policy: String,
    /// Why not, when not allowed.
    pub denied: Option<Denial>,
    /// The binding limit's capacity: the denying limit's, or when admitted
    /// the limit with the smallest share left.
    pub limit: u64,
    /// The binding limit's remaining units.
    pub remaining: u64,
    /// How long to wait before the same call can be admitted (zero when
    /// admitted). [`Decision::retry_after_header`] rounds it up to seconds.
    pub retry_after: Duration,
    /// How long until the binding limit is back to full capacity.
    pub reset_after: Duration,
    /// The standing of every limit the call was judged by, in the policy's
    /// order (an `acquire` judges only the concurrency limit; empty when the
    /// store could not be asked).
    pub limits: Vec<LimitStatus>,
    /// What the admitted call holds (a permit, a reservation), if anything.
    pub lease: Option<Lease>,
    /// Who decided.
    pub source: Source,
    /// The store's clock at the decision, µs since the Unix epoch (the Redis
    /// server's `TIME`); `None` when the store was not asked.
    pub decided_at_us: Option<i64>,
}

impl Decision {
    /// Builds a decision from each limit's standing.
    pub(crate) fn judged(
        policy: &str,
        limits: Vec<LimitStatus>,
        lease: Option<Lease>,
        source: Source,
        decided_at_us: Option<i64>,
    ) -> Decision {
        let allowed = limits.iter().all(|l| l.admitted);
        let binding = if allowed {
            limits.iter().min_by(|a, b| share(a).total_cmp(&share(b)))
        } else {
            limits
                .iter()
                .filter(|l| !l.admitted)
                .max_by_key(|l| l.retry_after)
        };
        let (limit, remaining, reset_after) = binding
            .map(|l| (l.capacity(), l.remaining, l.reset_after))
            .unwrap_or_default();
        let retry_after = limits
            .iter()
            .map(|l| l.retry_after)
            .max()
            .unwrap_or_default();
        Decision {
            allowed,
            policy: policy.to_owned(),
            denied: binding.filter(|_| !allowed).map(|l| Denial::Limit {
                name: l.name.clone(),
            }),
            limit,
            remaining,
            retry_after,
            reset_after,
            limits,
            lease: lease.filter(|_| allowed),
            source,
            decided_at_us,
        }
    }

    /// A fail-closed denial: the store could not be asked.
    pub(crate) fn unavailable(policy: &str, reason: String, retry_after: Duration) -> Decision {
        Decision {
            allowed: false,
            policy: policy.to_owned(),
            denied: Some(Denial::Unavailable { reason }),
            limit: 0,
            remaining: 0,
            retry_after,
            reset_after: retry_after,
            limits: Vec::new(),
            lease: None,
            source: Source::Nobody,
            decided_at_us: None,
        }
    }

    /// The standing of the limit named `name`, if this decision judged it.
    pub fn status(&self, name: &str) -> Option<&LimitStatus> {
        self.limits.iter().find(|l| l.name == name)
    }

    /// The name of the limit that denied the call, if a limit did.
    pub fn denied_by(&self) -> Option<&str> {
        match &self.denied {
            Some(Denial::Limit { name }) => Some(name),
            _ => None,
        }
    }

    /// `Retry-After` in whole seconds, rounded up (at least 1 when not
    /// allowed); `None` when allowed.
    pub fn retry_after_header(&self) -> Option<u64> {
        (!self.allowed).then(|| ceil_secs(self.retry_after).max(1))
    }

    /// The `RateLimit-Policy` field of the IETF httpapi draft
    /// (draft-ietf-httpapi-ratelimit-headers-09): one item per limit,
    /// named `policy.limit`, with its quota `q` (a rate's limit per period,
    /// not its burst), window `w` in seconds and, for calls and permits, the
    /// quota unit `qu`.
    pub fn rate_limit_policy_header(&self) -> Option<String> {
        let items: Vec<String> = self
            .limits
            .iter()
            .map(|l| {
                let mut item = format!("\"{}.{}\";q={}", self.policy, l.name, l.kind.quota());
                match (l.kind, l.unit) {
                    (Kind::Concurrency { .. }, _) => item.push_str(";qu=\"concurrent-requests\""),
                    (_, Unit::Calls) => item.push_str(";qu=\"requests\""),
                    _ => {}
                }
                if let Some(w) = window_secs(l) {
                    item.push_str(&format!(";w={w}"));
                }
                item
            })
            .collect();
        (!items.is_empty()).then(|| items.join(", "))
    }

    /// The `RateLimit` field of the same draft: each limit's remaining `r`
    /// and seconds `t` until it is back to full (rounded up).
    pub fn rate_limit_header(&self) -> Option<String> {
        let items: Vec<String> = self
            .limits
            .iter()
            .map(|l| {
                format!(
                    "\"{}.{}\";r={};t={}",
                    self.policy,
                    l.name,
                    l.remaining,
                    ceil_secs(l.reset_after)
                )
            })
            .collect();
        (!items.is_empty()).then(|| items.join(", "))
    }

    /// Every header to send with the response: `RateLimit-Policy`,
    /// `RateLimit` and, when denied, `Retry-After`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(3);
        if let Some(policy) = self.rate_limit_policy_header() {
            headers.push(("RateLimit-Policy", policy));
        }
        if let Some(current) = self.rate_limit_header() {
            headers.push(("RateLimit", current));
        }
        if let Some(secs) = self.retry_after_header() {
            headers.push(("Retry-After", secs.to_string()));
        }
        headers
    }
}

/// The share of a limit left, for picking the binding one.
fn share(status: &LimitStatus) -> f64 {
    status.remaining as f64 / status.capacity().max(1) as f64
}

fn window_secs(status: &LimitStatus) -> Option<u64> {
    status.kind.window().map(ceil_secs)
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::spec::Window;

    fn status(
        limit: &Limit,
        admitted: bool,
        remaining: u64,
        retry_us: u64,
        reset_us: u64,
    ) -> LimitStatus {
        LimitStatus::new(limit, admitted, remaining, retry_us, reset_us)
    }

    #[test]
    fn a_denial_names_the_limit_that_frees_last_and_renders_headers() {
        let rpm = Limit::requests("rpm", 600, Duration::from_secs(60));
        let tpm = Limit::tokens("tpm", 90_000, Duration::from_secs(60));
        let daily = Limit::quota("daily", 1_000_000, Window::Day);
        let d = Decision::judged(
            "chat",
            vec![
                status(&rpm, true, 10, 0, 1_000_000),
                status(&tpm, false, 120, 2_500_001, 59_000_000),
                status(&daily, true, 5_000, 0, 3_600_000_000),
            ],
            None,
            Source::Server,
            Some(1),
        );
        assert!(!d.allowed);
        assert_eq!(d.denied_by(), Some("tpm"));
        assert_eq!((d.limit, d.remaining), (90_000, 120));
        assert_eq!(d.retry_after_header(), Some(3), "2.5 s rounds up to 3");
        assert_eq!(
            d.rate_limit_policy_header().unwrap(),
            "\"chat.rpm\";q=600;qu=\"requests\";w=60, \"chat.tpm\";q=90000;w=60, \
             \"chat.daily\";q=1000000;w=86400"
        );
        assert_eq!(
            d.rate_limit_header().unwrap(),
            "\"chat.rpm\";r=10;t=1, \"chat.tpm\";r=120;t=59, \"chat.daily\";r=5000;t=3600"
        );
        assert_eq!(d.headers().len(), 3);
    }

    #[test]
    fn a_lease_travels_as_json() {
        let lease = Lease {
            subject: "tenant-1".into(),
            id: "0193a0f2-0000-7000-8000-000000000001".into(),
            expires_at_us: 1_800_000_000_000_000,
            reserved: 2_000,
            permit: true,
            local: false,
        };
        let json = serde_json::to_string(&lease).unwrap();
        assert_eq!(serde_json::from_str::<Lease>(&json).unwrap(), lease);
    }

    #[test]
    fn an_admission_binds_on_the_smallest_share_left() {
        let rpm = Limit::requests("rpm", 100, Duration::from_secs(60));
        let c = Limit::concurrency("inflight", 4);
        let d = Decision::judged(
            "p",
            vec![status(&rpm, true, 50, 0, 1), status(&c, true, 1, 0, 0)],
            None,
            Source::Server,
            None,
        );
        assert!(d.allowed && d.denied.is_none());
        assert_eq!((d.limit, d.remaining), (4, 1));
        assert_eq!(d.retry_after_header(), None);
        assert!(
            d.rate_limit_policy_header()
                .unwrap()
                .contains("\"p.inflight\";q=4;qu=\"concurrent-requests\"")
        );
    }
}
