//! One function per script: arguments in, typed reply out. Each works on
//! any async connection (the shared manager, or a worker's dedicated one)
//! and returns the driver's error for the caller to map.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, RedisError, Value};
use reposmith_core::job::{JobEnvelope, StartAt};
use uuid::Uuid;

use super::keys::QueueKeys;
use super::scripts::{self, Lua};
use crate::reply::{array, flag, int, text, unexpected};

type RedisResult<T> = Result<T, RedisError>;

/// Reclaimed expired leases per fetch: bounds one script's run time.
const REAP_BATCH: u32 = 100;
/// Delayed jobs promoted per fetch.
const PROMOTE_BATCH: u32 = 1000;
/// Dead jobs deleted per purge call.
pub(crate) const PURGE_BATCH: u32 = 1000;
/// Times and delays are capped here (about 35,000 years from 1970): Lua
/// numbers are doubles, exact only below 2^53.
const MAX_MS: u64 = 1 << 50;

/// Runs `script` with the queue's keys, its prefix and `args`.
async fn run<C: ConnectionLike + Send>(
    conn: &mut C,
    script: &Lua,
    keys: &QueueKeys,
    args: &[&dyn ToArg],
) -> RedisResult<Value> {
    invoke(conn, script, keys, |cmd| {
        for arg in args {
            arg.push(cmd);
        }
    })
    .await
}

/// `EVALSHA` with the queue's keys, its prefix and what `push_args`
/// appends; on `NOSCRIPT`, `EVAL` with the source. Either is routed by its
/// first key, so on a cluster both reach the master of the queue's slot.
async fn invoke<C: ConnectionLike + Send>(
    conn: &mut C,
    script: &Lua,
    keys: &QueueKeys,
    push_args: impl Fn(&mut Cmd),
) -> RedisResult<Value> {
    let call = |verb: &str, body: &str| {
        let mut cmd = redis::cmd(verb);
        let fixed = keys.script_keys();
        cmd.arg(body)
            .arg(fixed.len())
            .arg(&fixed[..])
            .arg(&keys.prefix);
        push_args(&mut cmd);
        cmd
    };
    match call("EVALSHA", script.hash()).query_async(conn).await {
        Err(e) if e.code() == Some("NOSCRIPT") => {
            call("EVAL", script.code()).query_async(conn).await
        }
        other => other,
    }
}

/// A script argument of any of the types the queue sends.
trait ToArg: Sync {
    fn push(&self, cmd: &mut Cmd);
}

impl<T: redis::ToRedisArgs + Sync> ToArg for T {
    fn push(&self, cmd: &mut Cmd) {
        cmd.arg(self);
    }
}

/// What the enqueue script said about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Added {
    /// The id of the job now holding the slot: the new job's, or, for a
    /// duplicate, the one enqueued before.
    pub(crate) id: Uuid,
    /// True when nothing was added.
    pub(crate) duplicate: bool,
}

/// Whose job ids an enqueue carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ids {
    /// Made by the queue just now (fresh UUIDs): never seen before.
    Fresh,
    /// Given by the caller (an outbox relay): checked and remembered for
    /// the dedup window, so a second delivery is a duplicate.
    Caller,
}

/// Enqueues `jobs` in one script call (atomic: all or none).
pub(crate) async fn enqueue<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &QueueKeys,
    window: Duration,
    jobs: &[(Uuid, &JobEnvelope)],
    ids: Ids,
) -> RedisResult<Vec<Added>> {
    let push_jobs = |cmd: &mut Cmd| {
        let caller = if ids == Ids::Caller { "1" } else { "0" };
        cmd.arg(millis(window).max(1)).arg(jobs.len()).arg(caller);
        for (id, envelope) in jobs {
            let (kind, at) = start(envelope.start);
            cmd.arg(id.to_string())
                .arg(&envelope.payload)
                .arg(envelope.max_attempts)
                .arg(envelope.backoff_base_ms.min(MAX_MS))
                .arg(envelope.backoff_max_ms.min(MAX_MS))
                .arg(envelope.timeout_ms.min(MAX_MS))
                .arg(envelope.priority)
                .arg(envelope.key.as_deref().unwrap_or(""))
                .arg(kind)
                .arg(at)
                .arg(
                    envelope
                        .tenant
                        .as_ref()
                        .map(|t| t.setting())
                        .unwrap_or_default(),
                );
        }
    };
    let reply = invoke(conn, &scripts::ENQUEUE, keys, push_jobs).await?;
    let reply = array(reply, "enqueue")?;
    if reply.len() != jobs.len() * 2 {
        return Err(unexpected("enqueue"));
    }
    reply
        .chunks(2)
        .map(|pair| {
            let duplicate = text(&pair[0]).as_deref() == Some("duplicate");
            let id = text(&pair[1]).and_then(|id| Uuid::parse_str(&id).ok());
            let id = id.ok_or_else(|| unexpected("enqueue"))?;
            Ok(Added { id, duplicate })
        })
        .collect()
}

fn start(start: StartAt) -> (&'static str, u64) {
    match start {
        StartAt::Now => ("now", 0),
        StartAt::AfterMillis(ms) => ("after", ms.min(MAX_MS)),
        StartAt::UnixMillis(ms) => ("at", ms.min(MAX_MS)),
    }
}

/// A job leased to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leased {
    pub(crate) id: Uuid,
    /// The attempt this lease runs, from 1.
    pub(crate) attempt: u32,
    /// The fencing token: renew, ack, fail and release must present it.
    pub(crate) token: i64,
    pub(crate) payload: String,
    pub(crate) max_attempts: u32,
    pub(crate) backoff_base_ms: u64,
    pub(crate) backoff_max_ms: u64,
    pub(crate) timeout_ms: u64,
    pub(crate) key: Option<String>,
    /// The tenant's setting text, for a tenant's job; `None` for a job of
    /// no tenant and for one enqueued before jobs carried tenants (its
    /// hash has no such field).
    pub(crate) tenant: Option<String>,
}

/// Fields per job in the fetch script's reply.
const FETCHED_FIELDS: usize = 11;

/// What one fetch returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub(crate) jobs: Vec<Leased>,
    /// When nothing was leased: how long until the next delayed job is due
    /// (`None`: nothing is delayed).
    pub(crate) next_due: Option<Duration>,
}

/// Reclaims expired leases, promotes due delayed jobs and leases up to `max`.
pub(crate) async fn fetch<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &QueueKeys,
    lease: Duration,
    max: usize,
) -> RedisResult<Fetched> {
    let args: [&dyn ToArg; 4] = [&millis(lease).max(1), &max, &REAP_BATCH, &PROMOTE_BATCH];
    let reply = array(run(conn, &scripts::FETCH, keys, &args).await?, "fetch")?;
    let (head, rest) = reply.split_first().ok_or_else(|| unexpected("fetch"))?;
    if rest.len() % FETCHED_FIELDS != 0 {
        return Err(unexpected("fetch"));
    }
    let next_due = int(head)
        .filter(|ms| *ms >= 0)
        .map(|ms| Duration::from_millis(ms.unsigned_abs()));
    let jobs = rest
        .chunks(FETCHED_FIELDS)
        .map(leased)
        .collect::<RedisResult<_>>()?;
    Ok(Fetched { jobs, next_due })
}

fn leased(f: &[Value]) -> RedisResult<Leased> {
    let number = |i: usize| int(&f[i]).ok_or_else(|| unexpected("fetch"));
    let unsigned = |i: usize| number(i).map(|n| n.max(0).unsigned_abs());
    let id = text(&f[0]).and_then(|id| Uuid::parse_str(&id).ok());
    Ok(Leased {
        id: id.ok_or_else(|| unexpected("fetch"))?,
        attempt: u32::try_from(number(1)?).unwrap_or(u32::MAX),
        token: number(2)?,
        payload: text(&f[3]).unwrap_or_default(),
        max_attempts: u32::try_from(number(4)?).unwrap_or(u32::MAX),
        backoff_base_ms: unsigned(5)?,
        backoff_max_ms: unsigned(6)?,
        timeout_ms: unsigned(7)?.max(1),
        key: text(&f[9]).filter(|k| !k.is_empty()),
        tenant: text(&f[10]).filter(|t| !t.is_empty()),
    })
}

/// Extends a lease; false when it was lost.
pub(crate) async fn renew<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &QueueKeys,
    id: Uuid,
    token: i64,
    lease: Duration,
) -> RedisResult<bool> {
    let args: [&dyn ToArg; 3] = [&id.to_string(), &token, &millis(lease).max(1)];
    flag(&run(conn, &scripts::RENEW, keys, &args).await?, "renew")
}

/// Completes a job; false when the lease was lost (stale token).
pub(crate) async fn ack<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &QueueKeys,
    id: Uuid,
    token: i64,
) -> RedisResult<bool> {
    let args: [&dyn ToArg; 2] = [&id.to_string(), &token];
    flag(&run(conn, &scripts::ACK, keys, &args).await?, "ack")
}

/// Where a failed attempt left its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Delayed for another attempt.
    Retry,
    /// In the dead-letter set.
    Dead,
    /// The lease was lost; nothing changed.
    Stale,
}

/// Records a failed attempt.
pub(crate) async fn fail<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &QueueKeys,
    lease: (Uuid, i64),
    error: &str,
    retry_after: Duration,
    dead: bool,
) -> RedisResult<Failed> {
    let (id, token) = lease;
    let args: [&dyn ToArg; 5] = [
        &id.to_string(),
        &token,
        &error,
        &millis(retry_after),
        &if dead { "1" } else { "0" },
    ];
    match text(&run(conn, &scripts::FAIL, keys, &args).await?).as_deref() {
        Some("retry") => Ok(Failed::Retry),
        Some("dead") => Ok(Failed::Dead),
        Some("stale") => Ok(Failed::Stale),
        _ => Err(unexpected("fail")),
    }
}

/// Hands a leased job back without counting its attempt; false when stale.
pub(crate) async fn release<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &QueueKeys,
    id: Uuid,
    token: i64,
) -> RedisResult<bool> {
    let args: [&dyn ToArg; 2] = [&id.to_string(), &token];
    flag(&run(conn, &scripts::RELEASE, keys, &args).await?, "release")
}

/// One row of the dead-letter set, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadRow {
    pub(crate) id: Uuid,
    pub(crate) died_at_ms: i64,
    pub(crate) payload: String,
    pub(crate) attempts: u32,
    pub(crate) last_error: String,
}

/// A page of the dead-letter set, newest first.
pub(crate) async fn dead_page<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &QueueKeys,
    offset: usize,
    limit: usize,
) -> RedisResult<Vec<DeadRow>> {
    let args: [&dyn ToArg; 2] = [&offset, &limit];
    let reply = array(run(conn, &scripts::DEAD_PAGE, keys, &args).await?, "dead")?;
    if reply.len() % 5 != 0 {
        return Err(unexpected("dead"));
    }
    reply
        .chunks(5)
        .map(|f| {
            let id = text(&f[0]).and_then(|id| Uuid::parse_str(&id).ok());
            Ok(DeadRow {
                id: id.ok_or_else(|| unexpected("dead"))?,
                died_at_ms: int(&f[1]).unwrap_or(0),
                payload: text(&f[2]).unwrap_or_default(),
                attempts: int(&f[3]).and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
                last_error: text(&f[4]).unwrap_or_default(),
            })
        })
        .collect()
}

/// Moves a dead job back to the wait set; false when it is not dead.
pub(crate) async fn replay<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &QueueKeys,
    id: Uuid,
) -> RedisResult<bool> {
    let args: [&dyn ToArg; 1] = [&id.to_string()];
    flag(&run(conn, &scripts::REPLAY, keys, &args).await?, "replay")
}

/// Deletes dead job `id`, or up to [`PURGE_BATCH`] dead jobs when `None`.
pub(crate) async fn purge<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &QueueKeys,
    id: Option<Uuid>,
) -> RedisResult<u64> {
    let id = id.map(|id| id.to_string()).unwrap_or_default();
    let args: [&dyn ToArg; 2] = [&id, &PURGE_BATCH];
    let reply = run(conn, &scripts::PURGE, keys, &args).await?;
    int(&reply)
        .map(i64::unsigned_abs)
        .ok_or_else(|| unexpected("purge"))
}

/// Whole milliseconds, capped at [`MAX_MS`].
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).map_or(MAX_MS, |ms| ms.min(MAX_MS))
}
