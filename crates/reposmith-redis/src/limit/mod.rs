//! The Redis side of the rate limiter: [`RedisLimitStore`], a
//! [`LimitStore`] whose every operation is one Lua script over one
//! subject's keys, and [`RedisBackend::limiter`].
//!
//! ```no_run
//! use std::time::Duration;
//! use reposmith_core::limit::{Limit, LimiterOptions, Policy, Window};
//!
//! # async fn demo(redis: reposmith_redis::RedisBackend) -> reposmith_core::Result<()> {
//! let policy = Policy::new("chat")
//!     .with(Limit::requests("rpm", 600, Duration::from_secs(60)))
//!     .with(Limit::tokens("tpm", 90_000, Duration::from_secs(60)))
//!     .with(Limit::concurrency("inflight", 8))
//!     .with(Limit::quota("daily", 2_000_000, Window::Day));
//! let limiter = redis.limiter(policy, LimiterOptions::fail_closed())?;
//! let decision = limiter.check("tenant-42", 1_500).await?;
//! # Ok(()) }
//! ```
//!
//! Each call is `EVALSHA`, and `EVAL` with the source when the server
//! answers `NOSCRIPT` (a restart or a failover emptied its script cache).
//! The scripts read `TIME` before writing, which needs Redis 5 or later
//! (effects replication; the only kind since Redis 7).
//! On a Redis Cluster a subject's keys share a hash tag, so each script
//! runs on one master. A failover can lose the last writes acknowledged by
//! the old master (replication is asynchronous): the admissions of that
//! moment are forgotten, letting a subject take up to one more burst, and
//! the permits taken then are forgotten too. The cluster driver may send a
//! script again after a dropped connection: an admission then charges
//! twice (safe for the limit), and a repeated reconcile or release answers
//! as if the lease had already ended.

mod scripts;

use std::sync::Arc;
use std::time::Duration;

use redis::{Cmd, Value};
use reposmith_core::limit::{
    Admit, Admitted, Lease, LimitStore, Limiter, LimiterOptions, Operation, Policy, Reconciled,
    Standing, SubjectKeys,
};
use reposmith_core::repository::BoxFuture;
use reposmith_core::{Error, Result};

use crate::lua::Lua;
use crate::reply::{array, int, unexpected};
use crate::{RedisBackend, RedisConnection};

/// Limits kept in Redis. Cloning shares the connection.
#[derive(Debug, Clone)]
pub struct RedisLimitStore {
    backend: RedisBackend,
    prefix: String,
}

impl RedisBackend {
    /// A [`Limiter`] for `policy` keeping its state on this server (or
    /// cluster), after validating the policy and the options.
    pub fn limiter(&self, policy: Policy, options: LimiterOptions) -> Result<Limiter> {
        options.validate()?;
        let store = RedisLimitStore::new(self, &options.prefix)?;
        Limiter::new(policy, Arc::new(store), options)
    }
}

impl RedisLimitStore {
    /// A store under key prefix `prefix` (letters, digits, `.`, `_`, `-`).
    pub fn new(backend: &RedisBackend, prefix: &str) -> Result<RedisLimitStore> {
        reposmith_core::limit::check_name(prefix, "limiter prefix")?;
        Ok(RedisLimitStore {
            backend: backend.clone(),
            prefix: prefix.to_owned(),
        })
    }

    fn keys(&self, policy: &Policy, subject: &str) -> SubjectKeys {
        SubjectKeys::new(&self.prefix, policy.name(), subject)
    }

    /// Runs `script` over `keys` with `args`: `EVALSHA`, then `EVAL` on
    /// `NOSCRIPT`. Routed by the first key (one slot for all four).
    async fn run(&self, script: &Lua, keys: &SubjectKeys, args: &[String]) -> Result<Value> {
        let call = |verb: &str, body: &str| {
            let mut cmd = Cmd::new();
            cmd.arg(verb)
                .arg(body)
                .arg(4)
                .arg(&keys.all()[..])
                .arg(args);
            cmd
        };
        let mut conn: RedisConnection = self.backend.connection();
        let reply = match call("EVALSHA", script.hash()).query_async(&mut conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                call("EVAL", script.code()).query_async(&mut conn).await
            }
            other => other,
        };
        reply.map_err(|e| self.backend.map_error(&e))
    }
}

/// The limits as script arguments: their count, then five per limit
/// ([`Limit::wire`](reposmith_core::limit::Limit::wire)).
fn limit_args(policy: &Policy, args: &mut Vec<String>) {
    args.push(policy.limits().len().to_string());
    for limit in policy.limits() {
        args.extend(limit.wire());
    }
}

fn micros(d: Duration) -> String {
    d.as_micros().to_string()
}

/// Reads the admit script's reply; a negative number or a wrong shape is
/// an error, never read as zero.
fn admitted(reply: Value) -> Result<Admitted> {
    let bad = || map_reply(unexpected("limit admit"));
    let items = array(reply, "limit admit").map_err(map_reply)?;
    let ints: Vec<i64> = items
        .iter()
        .map(int)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let [now, expires, all, rest @ ..] = &ints[..] else {
        return Err(bad());
    };
    if rest.len() % 5 != 0 || rest.iter().any(|n| *n < 0) {
        return Err(bad());
    }
    let standings = rest
        .chunks_exact(5)
        .map(|c| Standing {
            index: c[0] as usize,
            admitted: c[1] == 1,
            remaining: c[2] as u64,
            retry_after_us: c[3] as u64,
            reset_after_us: c[4] as u64,
        })
        .collect();
    Ok(Admitted {
        admitted: *all == 1,
        standings,
        now_us: *now,
        lease_expires_at_us: (*expires > 0).then_some(*expires),
    })
}

fn map_reply(e: redis::RedisError) -> Error {
    Error::Backend {
        backend: reposmith_core::Backend::Redis,
        code: None,
        reason: e.to_string(),
    }
}

impl LimitStore for RedisLimitStore {
    fn admit<'a>(&'a self, request: &'a Admit<'a>) -> BoxFuture<'a, Result<Admitted>> {
        Box::pin(async move {
            let op = match request.operation {
                Operation::Reserve => "r",
                Operation::Acquire => "a",
                _ => "c",
            };
            let mut args = vec![
                op.to_owned(),
                request.cost.to_string(),
                request.lease_id.to_owned(),
                micros(request.lease_ttl),
            ];
            limit_args(request.policy, &mut args);
            let keys = self.keys(request.policy, request.subject);
            admitted(self.run(&scripts::ADMIT, &keys, &args).await?)
        })
    }

    fn reconcile<'a>(
        &'a self,
        policy: &'a Policy,
        lease: &'a Lease,
        actual: u64,
    ) -> BoxFuture<'a, Result<Reconciled>> {
        Box::pin(async move {
            let mut args = vec![lease.id().to_owned(), actual.to_string()];
            limit_args(policy, &mut args);
            let keys = self.keys(policy, lease.subject());
            let reply = self.run(&scripts::RECONCILE, &keys, &args).await?;
            let items = array(reply, "limit reconcile").map_err(map_reply)?;
            match items
                .iter()
                .map(int)
                .collect::<Option<Vec<i64>>>()
                .as_deref()
            {
                Some([settled, charged]) => Ok(Reconciled::new(*settled == 1, *charged)),
                _ => Err(map_reply(unexpected("limit reconcile"))),
            }
        })
    }

    fn renew<'a>(
        &'a self,
        policy: &'a Policy,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<i64>>> {
        Box::pin(async move {
            let args = [lease.id().to_owned(), micros(ttl)];
            let keys = self.keys(policy, lease.subject());
            let reply = self.run(&scripts::RENEW, &keys, &args).await?;
            let expires = int(&reply).ok_or_else(|| map_reply(unexpected("limit renew")))?;
            Ok((expires > 0).then_some(expires))
        })
    }

    fn release<'a>(&'a self, policy: &'a Policy, lease: &'a Lease) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let keys = self.keys(policy, lease.subject());
            let reply = self
                .run(&scripts::RELEASE, &keys, &[lease.id().to_owned()])
                .await?;
            Ok(int(&reply) == Some(1))
        })
    }

    fn reset<'a>(&'a self, policy: &'a Policy, subject: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let keys = self.keys(policy, subject);
            let mut conn = self.backend.connection();
            redis::cmd("DEL")
                .arg(&keys.all()[..])
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.backend.map_error(&e))
        })
    }
}

/// The month window the server script computes for `now_us` (number, end
/// µs): lets tests hold the Lua calendar to the Rust one.
#[doc(hidden)]
pub async fn month_window_on_server(backend: &RedisBackend, now_us: i64) -> Result<(i64, i64)> {
    let mut conn = backend.connection();
    let reply: Vec<i64> = redis::cmd("EVAL")
        .arg(scripts::MONTH_OF.code())
        .arg(0)
        .arg(now_us)
        .query_async(&mut conn)
        .await
        .map_err(|e| backend.map_error(&e))?;
    match reply[..] {
        [id, end] => Ok((id, end)),
        _ => Err(map_reply(unexpected("month window"))),
    }
}
