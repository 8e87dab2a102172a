//! The repository cache on Redis: [`RedisCacheStore`] implements the core's
//! [`CacheStore`] lease protocol (see [`reposmith_core::cache::store`]) on a
//! standalone server or a Redis Cluster, and [`RedisBackend::cache`] builds
//! a ready [`Cache`] over it.
//!
//! # Entries
//!
//! Every entry is one Redis hash at the entry's key:
//!
//! | field | holds |
//! |---|---|
//! | `v` | the encoded entry ([`codec`](reposmith_core::cache::codec)) |
//! | `d` | how long its database read took, in ms (XFetch) |
//! | `l` | the lease token, while someone holds the right to fill it |
//! | `le` | when that lease expires, in the server's ms |
//!
//! Value and lease live in one key, so deleting the key (an invalidation)
//! drops both, and a fill is written only while `l` still holds the
//! filler's token. A key with a lease and no value expires with its lease:
//! a holder that crashes leaves nothing behind. All times come from the
//! server (`TIME` inside the scripts), never from an application's clock.
//!
//! Cached queries live under their entity's *generation*, a random token at
//! [`Scope::generation_key`]; an invalidation of the scope deletes that key,
//! and the next lookup makes a fresh one (from its own random lease token),
//! which orphans every query entry of the old generation (they expire by
//! their TTL). A generation key expires after [`GENERATION_TTL`]; one that
//! expires or is evicted is recreated the same way, which can orphan
//! entries but never revive one: a generation name is never reused.
//!
//! Deleting the generation (rather than writing a new one) keeps an
//! invalidation to `DEL`s only, which Redis accepts even when it is out of
//! memory under `maxmemory-policy noeviction`: a full server refuses
//! lookups and fills (the cache then reads the database), never the
//! invalidation after a commit.
//!
//! # Round trips
//!
//! Each call is one round trip: a batch goes as one pipeline of scripts
//! (`EVALSHA`, with `EVAL` once more for any answered `NOSCRIPT`). On a
//! cluster the driver sends a pipeline to the slot of its first key and
//! refuses one whose keys span slots, so a batch is split into one
//! pipeline per slot, all sent at once (one round trip in parallel to each
//! master concerned). The driver retries a pipeline that met a redirect
//! (`MOVED`, `ASK` during a resharding) as a whole; a script of it that
//! already ran on the old owner runs again on the new one, which can only
//! take a lease that expires, or refuse a fill.
//!
//! The query lookup and the query discard touch one key they do not
//! declare, the entry under the generation they just read (see
//! `scripts.rs`): it has the generation key's hash tag, so it is in the
//! same slot, and Redis allows it; declaring it would need a second round
//! trip to learn the generation first.
//!
//! # Eviction
//!
//! Any `maxmemory-policy` is safe for the cache, `allkeys-*` included: an
//! entry's lease lives in the entry's own key, and no separate stamp exists
//! that could be evicted while the entry stays. An eviction deletes value
//! and lease together, exactly like an invalidation, so the worst it can
//! do is refuse a fill (the lease is gone) or turn a hit into a miss. An
//! evicted generation key orphans its queries, as an invalidation would.
//! [`RedisCacheStore::check`] reports the policy and refuses nothing (unlike
//! the queue's [`check_server`](crate::queue::check_server), which needs
//! `noeviction`): a Redis shared by the queue and the cache must keep
//! `noeviction`, under which a full server makes cache calls fail and reads
//! go to the database.
//!
//! # Near cache
//!
//! With the `near-cache` feature, `RedisCacheStore::with_near_cache` keeps
//! entries in the process for up to a second in front of Redis (the
//! `near` module tells how, and why pub/sub rather than client-side
//! tracking). It trades the cross-process half of the promise for hits that
//! never leave the process: this process still sees its own commits at
//! once, but another process's commit can go unseen for up to the near
//! cache's TTL (usually about a millisecond, the time the invalidation's
//! pub/sub message takes to arrive). Without the feature nothing of it is
//! built.

mod batch;
#[cfg(feature = "near-cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "near-cache")))]
pub mod near;
mod scripts;

#[cfg(feature = "near-cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "near-cache")))]
pub use near::NearCacheOptions;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use reposmith_core::cache::{
    Cache, CacheOptions, CacheStore, EntryKey, Fill, Invalidation, Lease, Lookup, LookupRequest,
    Scope,
};
use reposmith_core::repository::BoxFuture;
use reposmith_core::{Error, Result};

use self::batch::{Op, unexpected};
use self::scripts::{BUSY, HIT, MISS};
use crate::RedisBackend;

/// How long a generation key lives before the next lookup replaces it
/// (orphaning that entity's cached queries once a week at worst).
pub const GENERATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Stands for the generation in a query key's name: the name is split
/// around it, and the scripts put the generation they read in between.
/// A control character: never part of a scope (escaped text and braces)
/// nor of a hash (hex).
const GENERATION_MARK: &str = "\u{1}";

/// The Redis side of the repository cache. Cheap to clone: clones share
/// the backend's connection.
#[derive(Clone)]
pub struct RedisCacheStore {
    backend: RedisBackend,
    prefix: String,
    /// Whether invalidations are published for near caches.
    publish: bool,
    #[cfg(feature = "near-cache")]
    near: Option<Arc<near::Near>>,
}

/// What [`RedisCacheStore::check`] found about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheServerCheck {
    /// `maxmemory-policy` (on a cluster, of the first master whose policy
    /// differs from the others', else of the first master); `None` when
    /// `CONFIG GET` is not allowed.
    pub maxmemory_policy: Option<String>,
    /// True when the policy lets Redis evict cache entries under memory
    /// pressure (`allkeys-*`, `volatile-*`): safe, entries turn into misses.
    /// False for `noeviction`: a full server refuses lookups and fills and
    /// the cache reads the database until memory frees.
    pub evicts: Option<bool>,
}

impl RedisCacheStore {
    /// A store on `backend`'s connection. Keys come whole from the core
    /// ([`Keys`](reposmith_core::cache::Keys), under `options.prefix`).
    pub fn new(backend: &RedisBackend, options: &CacheOptions) -> RedisCacheStore {
        RedisCacheStore {
            backend: backend.clone(),
            prefix: options.prefix.clone(),
            publish: false,
            #[cfg(feature = "near-cache")]
            near: None,
        }
    }

    /// Also publishes every invalidation (once applied) on
    /// [`invalidation_channel`](Self::invalidation_channel), for the near
    /// caches of other processes. On by itself with a near cache; a
    /// process that writes but keeps no near cache turns it on when others
    /// do keep one, or they serve its writes' old values for up to their
    /// near cache's TTL.
    pub fn publish_invalidations(mut self, on: bool) -> RedisCacheStore {
        self.publish = on;
        self
    }

    /// The pub/sub channel invalidations are published on:
    /// `{prefix}:cache:invalidations`.
    pub fn invalidation_channel(&self) -> String {
        format!("{}:cache:invalidations", self.prefix)
    }

    /// Adds a near cache (L1) in this process in front of Redis, and
    /// publishes invalidations. Starts the subscriber task that keeps it
    /// current, so it must be called inside a Tokio runtime. Read the
    /// trade-off first: an L1 hit is served without asking Redis, so a
    /// commit in another process may go unseen here for up to
    /// [`NearCacheOptions::ttl`] (see [`near`]).
    #[cfg(feature = "near-cache")]
    pub fn with_near_cache(mut self, options: NearCacheOptions) -> Result<RedisCacheStore> {
        if options.ttl.is_zero() || options.max_entries == 0 {
            return Err(Error::config(
                "near cache",
                "ttl and max_entries must be above zero",
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::config(
                "near cache",
                "with_near_cache must be called inside a Tokio runtime",
            ));
        }
        let channel = self.invalidation_channel();
        self.near = Some(near::Near::start(self.backend.clone(), channel, &options));
        self.publish = true;
        Ok(self)
    }

    /// Whether the near cache is in use: its subscriber is subscribed.
    /// False without a near cache, and while the subscription is down (L1
    /// is then bypassed).
    #[cfg(feature = "near-cache")]
    pub fn near_cache_live(&self) -> bool {
        self.near.as_ref().is_some_and(|near| near.is_live())
    }

    /// The key prefix this store was built with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Reads the server's `maxmemory-policy` (every master's, on a cluster)
    /// and reports it. Never refuses a policy: any is safe for the cache
    /// (see the module docs). Fails only when the server cannot be reached;
    /// a server that forbids `CONFIG` gives `None`s.
    pub async fn check(&self) -> Result<CacheServerCheck> {
        let mut get = redis::cmd("CONFIG");
        get.arg("GET").arg("maxmemory-policy");
        let replies = match self.backend.connection().on_every_master(get).await {
            Ok(replies) => replies,
            Err(e) => {
                let error = self.backend.map_error(&e);
                if error.is_unreachable() {
                    return Err(error);
                }
                tracing::debug!(%error, "CONFIG GET is not allowed: cache eviction policy unknown");
                return Ok(CacheServerCheck {
                    maxmemory_policy: None,
                    evicts: None,
                });
            }
        };
        let policies: Vec<Option<String>> = replies
            .into_iter()
            .map(|(_, reply)| config_value(reply))
            .collect();
        let first = policies.first().cloned().flatten();
        let policy = policies
            .iter()
            .flatten()
            .find(|p| Some(*p) != first.as_ref())
            .cloned()
            .or(first);
        let evicts = policy.as_deref().map(|p| p != "noeviction");
        if evicts == Some(false) {
            tracing::info!(server = %self.backend.target(), "Redis maxmemory-policy is \
                noeviction: when memory is full, cache lookups fail and reads go to the \
                database (invalidations still apply)");
        }
        Ok(CacheServerCheck {
            maxmemory_policy: policy,
            evicts,
        })
    }

    async fn run(&self, ops: &[Op]) -> Result<Vec<Value>> {
        batch::run(&self.backend.connection(), ops)
            .await
            .map_err(|e| self.backend.map_error(&e))
    }

    async fn lookup_all(&self, requests: &[LookupRequest]) -> Result<Vec<Lookup>> {
        #[cfg(feature = "near-cache")]
        if let Some(near) = self.near.as_ref().filter(|near| near.is_live()) {
            return self.lookup_near(near, requests).await;
        }
        let requests: Vec<&LookupRequest> = requests.iter().collect();
        let found = self.lookup_remote(&requests).await?;
        Ok(found.into_iter().map(|(lookup, _)| lookup).collect())
    }

    /// Looks up in L1 first, then the rest in Redis; Redis hits go to L1.
    #[cfg(feature = "near-cache")]
    async fn lookup_near(
        &self,
        near: &near::Near,
        requests: &[LookupRequest],
    ) -> Result<Vec<Lookup>> {
        let ticket = near.ticket();
        let mut found: Vec<Option<Lookup>> = requests
            .iter()
            .map(|r| {
                near.get(&r.key).map(|value| Lookup::Hit {
                    value,
                    refresh: None,
                })
            })
            .collect();
        let pending: Vec<&LookupRequest> = requests
            .iter()
            .zip(&found)
            .filter(|(_, held)| held.is_none())
            .map(|(request, _)| request)
            .collect();
        if !pending.is_empty() {
            let mut remote = self.lookup_remote(&pending).await?.into_iter();
            for (slot, request) in found.iter_mut().zip(requests) {
                if slot.is_some() {
                    continue;
                }
                let Some((lookup, ttl_left)) = remote.next() else {
                    break;
                };
                if let Lookup::Hit {
                    value,
                    refresh: None,
                } = &lookup
                {
                    near.put(&ticket, &request.key, value, ttl_left);
                }
                *slot = Some(lookup);
            }
        }
        found
            .into_iter()
            .map(|lookup| lookup.ok_or_else(|| self.backend.map_error(&unexpected("lookup"))))
            .collect()
    }

    /// Looks up in Redis: each lookup with the entry's remaining TTL (zero
    /// unless a hit).
    async fn lookup_remote(&self, requests: &[&LookupRequest]) -> Result<Vec<(Lookup, Duration)>> {
        let ops = requests
            .iter()
            .map(|request| lookup_op(request))
            .collect::<Result<Vec<_>>>()?;
        let replies = self.run(&ops).await?;
        requests
            .iter()
            .zip(replies)
            .map(|(request, reply)| {
                let query = matches!(request.key, EntryKey::Query { .. });
                lookup_of(reply, query).map_err(|e| self.backend.map_error(&e))
            })
            .collect()
    }

    async fn fill_all(&self, fills: &[Fill]) -> Result<Vec<bool>> {
        // A query fill without a generation cannot be checked: refused.
        let mut sent = Vec::with_capacity(fills.len());
        let mut at = Vec::with_capacity(fills.len());
        for fill in fills {
            at.push(fill_op(fill).map(|op| {
                sent.push(op);
                sent.len() - 1
            }));
        }
        let replies = self.run(&sent).await?;
        at.into_iter()
            .map(|i| match i {
                None => Ok(false),
                Some(i) => replies
                    .get(i)
                    .ok_or_else(|| unexpected("fill"))
                    .and_then(|reply| flag(reply, "fill"))
                    .map_err(|e| self.backend.map_error(&e)),
            })
            .collect()
    }

    async fn invalidate_all(&self, invalidation: &Invalidation) -> Result<()> {
        if invalidation.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::with_capacity(invalidation.rows.len() + invalidation.scopes.len() + 1);
        for row in &invalidation.rows {
            ops.push(Op::command(row, redis::cmd("DEL").arg(row).to_owned()));
        }
        for scope in &invalidation.scopes {
            let key = scope.generation_key();
            ops.push(Op::command(&key, redis::cmd("DEL").arg(&key).to_owned()));
        }
        let publish = self
            .publish
            .then(|| self.publish_op(invalidation))
            .transpose()?;
        // The message must leave after the deletes are applied, or a
        // near cache could evict, then read the old value back. One
        // connection runs a pipeline in order; a cluster's per-slot
        // pipelines run side by side, so there it is a second round trip.
        let applied = match publish {
            Some(publish) if !self.backend.is_cluster() => {
                ops.push(publish);
                self.run(&ops).await.map(drop)
            }
            Some(publish) => match self.run(&ops).await {
                Ok(_) => self.run(std::slice::from_ref(&publish)).await.map(drop),
                Err(error) => Err(error),
            },
            None => self.run(&ops).await.map(drop),
        };
        #[cfg(feature = "near-cache")]
        if let Some(near) = &self.near {
            near.evict(invalidation);
        }
        applied
    }

    fn publish_op(&self, invalidation: &Invalidation) -> Result<Op> {
        let message = serde_json::to_vec(invalidation)
            .map_err(|e| Error::config("cache", format!("invalidation message: {e}")))?;
        let channel = self.invalidation_channel();
        let cmd = redis::cmd("PUBLISH").arg(&channel).arg(message).to_owned();
        Ok(Op::command(&channel, cmd))
    }

    async fn release_one(&self, key: &EntryKey, lease: &Lease) -> Result<()> {
        let Some(entry) = entry_key(key, lease) else {
            return Ok(());
        };
        let op = Op::script(
            &scripts::RELEASE,
            vec![entry],
            vec![lease.token.clone().into_bytes()],
        );
        self.run(std::slice::from_ref(&op)).await.map(drop)
    }

    async fn discard_one(&self, key: &EntryKey, value: &[u8]) -> Result<()> {
        let op = match key {
            EntryKey::Row(row) => {
                Op::script(&scripts::DISCARD, vec![row.clone()], vec![value.to_vec()])
            }
            EntryKey::Query { scope, hash } => {
                let (before, after) = split_query_key(scope, hash)?;
                Op::script(
                    &scripts::DISCARD,
                    vec![scope.generation_key()],
                    vec![value.to_vec(), before.into_bytes(), after.into_bytes()],
                )
            }
        };
        #[cfg(feature = "near-cache")]
        if let Some(near) = &self.near {
            near.evict_key(key);
        }
        self.run(std::slice::from_ref(&op)).await.map(drop)
    }
}

impl CacheStore for RedisCacheStore {
    fn lookup<'a>(&'a self, requests: &'a [LookupRequest]) -> BoxFuture<'a, Result<Vec<Lookup>>> {
        Box::pin(self.lookup_all(requests))
    }

    fn fill<'a>(&'a self, fills: &'a [Fill]) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(self.fill_all(fills))
    }

    fn invalidate<'a>(&'a self, invalidation: &'a Invalidation) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.invalidate_all(invalidation))
    }

    fn release<'a>(&'a self, key: &'a EntryKey, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.release_one(key, lease))
    }

    fn discard<'a>(&'a self, key: &'a EntryKey, value: &'a [u8]) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.discard_one(key, value))
    }
}

impl fmt::Debug for RedisCacheStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCacheStore")
            .field("backend", &self.backend)
            .field("prefix", &self.prefix)
            .field("publish", &self.publish)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A [`RedisCacheStore`] on this backend's connection.
    pub fn cache_store(&self, options: &CacheOptions) -> RedisCacheStore {
        RedisCacheStore::new(self, options)
    }

    /// The repository cache on this backend: [`Cache::new`] over a
    /// [`RedisCacheStore`]. Fails when an option is out of range.
    pub fn cache(&self, options: CacheOptions) -> Result<Cache> {
        let store = RedisCacheStore::new(self, &options);
        Cache::new(Arc::new(store), options)
    }
}

/// The lookup script call for `request`.
fn lookup_op(request: &LookupRequest) -> Result<Op> {
    let mut args = vec![
        request.token.clone().into_bytes(),
        millis(request.lease_ttl).to_string().into_bytes(),
        xfetch_arg(request.xfetch).into_bytes(),
    ];
    Ok(match &request.key {
        EntryKey::Row(row) => Op::script(&scripts::LOOKUP_ROW, vec![row.clone()], args),
        EntryKey::Query { scope, hash } => {
            let (before, after) = split_query_key(scope, hash)?;
            args.push(before.into_bytes());
            args.push(after.into_bytes());
            args.push(millis(GENERATION_TTL).to_string().into_bytes());
            Op::script(&scripts::LOOKUP_QUERY, vec![scope.generation_key()], args)
        }
    })
}

/// The fill script call for `fill`; `None` for a query lease without a
/// generation (it cannot be checked, so it is refused).
fn fill_op(fill: &Fill) -> Option<Op> {
    let mut args = vec![
        fill.lease.token.clone().into_bytes(),
        fill.value.clone(),
        ceil_millis(fill.recompute).to_string().into_bytes(),
        millis(fill.ttl).to_string().into_bytes(),
    ];
    let keys = match &fill.key {
        EntryKey::Row(row) => vec![row.clone()],
        EntryKey::Query { scope, hash } => {
            let generation = fill.lease.generation.as_ref()?;
            args.push(generation.clone().into_bytes());
            vec![scope.generation_key(), scope.query_key(generation, hash)]
        }
    };
    Some(Op::script(&scripts::FILL, keys, args))
}

/// The key an entry lives at under `lease`: a query's under the lease's
/// generation (`None` without one).
fn entry_key(key: &EntryKey, lease: &Lease) -> Option<String> {
    match key {
        EntryKey::Row(row) => Some(row.clone()),
        EntryKey::Query { scope, hash } => {
            let generation = lease.generation.as_ref()?;
            Some(scope.query_key(generation, hash))
        }
    }
}

/// The text of a query key before and after its generation.
fn split_query_key(scope: &Scope, hash: &str) -> Result<(String, String)> {
    let key = scope.query_key(GENERATION_MARK, hash);
    match key.split_once(GENERATION_MARK) {
        Some((before, after)) if !after.contains(GENERATION_MARK) => {
            Ok((before.to_owned(), after.to_owned()))
        }
        _ => Err(Error::config(
            "cache",
            format!(
                "query scope {:?} or hash {hash:?} holds a control character",
                scope.0
            ),
        )),
    }
}

/// A lookup script's reply: `{kind, value, lease, ms}`, a query's with its
/// generation appended; with a hit's remaining TTL.
fn lookup_of(reply: Value, query: bool) -> redis::RedisResult<(Lookup, Duration)> {
    let bad = || unexpected("lookup");
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let want = if query { 5 } else { 4 };
    if items.len() != want {
        return Err(bad());
    }
    let mut items = items.into_iter();
    let mut next = || items.next().ok_or_else(bad);
    let kind = int(&next()?).ok_or_else(bad)?;
    let value = bytes(next()?).ok_or_else(bad)?;
    let token = bytes(next()?).ok_or_else(bad)?;
    let ms = int(&next()?).ok_or_else(bad)?;
    let generation = match query {
        true => Some(text(bytes(next()?).ok_or_else(bad)?).ok_or_else(bad)?),
        false => None,
    };
    let lease = |token: Vec<u8>| -> redis::RedisResult<Lease> {
        Ok(Lease {
            token: text(token).ok_or_else(bad)?,
            generation: generation.clone(),
        })
    };
    let ms = Duration::from_millis(ms.max(0).unsigned_abs());
    match kind {
        HIT if !value.is_empty() => Ok((
            Lookup::Hit {
                value,
                refresh: match token.is_empty() {
                    true => None,
                    false => Some(lease(token)?),
                },
            },
            ms,
        )),
        MISS if !token.is_empty() => Ok((Lookup::Miss(lease(token)?), Duration::ZERO)),
        BUSY if !ms.is_zero() => Ok((Lookup::Busy { retry_in: ms }, Duration::ZERO)),
        _ => Err(bad()),
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

fn text(bytes: Vec<u8>) -> Option<String> {
    String::from_utf8(bytes).ok()
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn flag(value: &Value, what: &'static str) -> redis::RedisResult<bool> {
    match int(value) {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => Err(unexpected(what)),
    }
}

/// A `CONFIG GET` reply's value.
fn config_value(reply: Value) -> Option<String> {
    let text_of = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match reply {
        // RESP2: [name, value]; RESP3: {name: value}.
        Value::Array(items) => items.get(1).and_then(text_of),
        Value::Map(pairs) => pairs.first().and_then(|(_, v)| text_of(v)),
        _ => None,
    }
}

/// XFetch's factor as Lua reads it: finite, never negative.
fn xfetch_arg(xfetch: f64) -> String {
    match xfetch.is_finite() && xfetch > 0.0 {
        true => format!("{xfetch:.6}"),
        false => "0".to_owned(),
    }
}

/// Whole milliseconds, at least 1 (a zero TTL is an error in Redis), at
/// most 2^50 (Lua numbers are exact below 2^53).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, 1 << 50)
}

/// Milliseconds rounded up: a read of 0.3 ms counts as 1.
fn ceil_millis(duration: Duration) -> u64 {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    micros.div_ceil(1000).min(1 << 50)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_key_splits_around_its_generation() {
        let scope = Scope("{app:c:Doc:00000000000000ab}".to_owned());
        let (before, after) = split_query_key(&scope, "f00d").unwrap();
        assert_eq!(format!("{before}G{after}"), scope.query_key("G", "f00d"));
    }

    #[test]
    fn replies_of_the_wrong_shape_are_errors_not_panics() {
        let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        for reply in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(9), s(""), s(""), Value::Int(0)]),
            Value::Array(vec![Value::Int(HIT), s(""), s(""), Value::Int(0)]),
            Value::Array(vec![Value::Int(MISS), s(""), s(""), Value::Int(0)]),
            Value::Array(vec![Value::Int(BUSY), s(""), s(""), Value::Int(0)]),
            Value::Array(vec![Value::Int(HIT), Value::Int(3), s(""), Value::Int(0)]),
        ] {
            assert!(lookup_of(reply.clone(), false).is_err(), "{reply:?}");
        }
        let miss = Value::Array(vec![Value::Int(MISS), s(""), s("t"), Value::Int(0), s("g")]);
        assert!(lookup_of(miss.clone(), false).is_err());
        let (Lookup::Miss(lease), _) = lookup_of(miss, true).unwrap() else {
            panic!("a miss");
        };
        assert_eq!(
            (lease.token.as_str(), lease.generation.as_deref()),
            ("t", Some("g"))
        );
        assert!(flag(&Value::Int(2), "fill").is_err());
    }

    #[test]
    fn durations_become_script_arguments() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::MAX), 1 << 50);
        assert_eq!(ceil_millis(Duration::from_micros(300)), 1);
        assert_eq!(ceil_millis(Duration::ZERO), 0);
        assert_eq!(xfetch_arg(f64::INFINITY), "0");
        assert_eq!(xfetch_arg(-1.0), "0");
        assert_eq!(xfetch_arg(2.5), "2.500000");
    }
}
