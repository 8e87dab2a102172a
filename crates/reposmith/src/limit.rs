//! Rate limits and quotas for LLM traffic: a [`Policy`] of named limits
//! (requests per minute, tokens per minute, concurrent calls, a daily or
//! monthly quota) that a [`Limiter`] checks for one subject (a tenant, an
//! API key, a model) all at once: the call is admitted only when every limit
//! admits it, and nothing is charged when one refuses.
//!
//! With Redis configured, `store.redis()?.limiter(policy, options)` keeps
//! the state on the Redis server, judged by one Lua script on the server's
//! clock (GCRA for rates, calendar windows for quotas, leases for permits
//! and reservations). Before a model call [`Limiter::reserve`] the prompt's
//! tokens plus `max_tokens`; after it [`Limiter::reconcile`] with the tokens
//! really used. A [`Decision`] carries what an HTTP layer needs (allowed,
//! remaining, retry-after, the denying limit) and renders the IETF
//! `RateLimit-Policy`, `RateLimit` and `Retry-After` headers.
//!
//! [`LimiterOptions`] choose what happens while Redis is down or slow:
//! [`OnFailure::Closed`] denies with [`Denial::Unavailable`];
//! [`OnFailure::Open`] admits within this process's share of each limit
//! ([`LocalLimitStore`]). Details in [`reposmith_core::limit`].

pub use reposmith_core::limit::{
    Decision, Denial, Kind, Lease, Limit, LimitStatus, LimitStore, Limiter, LimiterOptions,
    LimiterStats, LocalLimitStore, OnFailure, Policy, Reconciled, Source, Unit, Window,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use reposmith_redis::limit::RedisLimitStore;
