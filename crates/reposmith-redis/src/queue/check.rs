//! [`check_server`]: refuses a Redis that may evict a queue's keys, warns
//! about one that keeps nothing across a restart or may lose the last second
//! of acknowledged jobs in a crash.

use std::sync::atomic::{AtomicBool, Ordering};

use redis::Value;
use reposmith_core::{Error, Result};

use crate::RedisBackend;
use crate::reply::text;

/// What the server's settings mean for a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerCheck {
    /// `maxmemory-policy`, when `CONFIG GET` is allowed.
    pub maxmemory_policy: Option<String>,
    /// False when both AOF (`appendonly no`) and RDB snapshots (`save ""`)
    /// are off: a restart loses every job. `None` when unknown.
    pub persistent: Option<bool>,
    /// `appendfsync`: of a master that does not fsync every write, else of
    /// the first master; `None` when unknown.
    pub appendfsync: Option<String>,
}

/// The fsync warning is logged once per process, not on every check.
static FSYNC_WARNED: AtomicBool = AtomicBool::new(false);

/// Checks that `backend`'s server suits a queue. `maxmemory-policy` must be
/// `noeviction`: under any other policy Redis may delete a job's keys under
/// memory pressure and the job is lost without a trace. Another policy is
/// refused with [`Error::Config`]. A server that forbids `CONFIG` (managed
/// Redis) is only warned about; so is one without persistence, and (once per
/// process) one with AOF on but `appendfsync` other than `always`: a crash
/// of the server may then lose jobs acknowledged within about the last
/// second.
///
/// On a cluster every master is asked (a queue lives on whichever owns its
/// slot) and the first one with another policy is refused; persistence
/// counts as on only when it is on every master. Configure the replicas
/// alike: a promoted replica brings its own settings.
pub async fn check_server(backend: &RedisBackend) -> Result<ServerCheck> {
    let (node, policy) = match config_get(backend, "maxmemory-policy").await {
        Ok(values) => pick(values, |policy| policy != "noeviction"),
        Err(error) if error.is_unreachable() => return Err(error),
        Err(error) => {
            tracing::warn!(%error, "CONFIG GET is not allowed on this Redis: cannot check that \
                maxmemory-policy is noeviction; make sure it is, or jobs may be evicted");
            return Ok(ServerCheck {
                maxmemory_policy: None,
                persistent: None,
                appendfsync: None,
            });
        }
    };
    if let Some(policy) = &policy
        && policy != "noeviction"
    {
        return Err(Error::config(
            "redis maxmemory-policy",
            format!(
                "the server at {} has maxmemory-policy {policy}, which may evict queued \
                 jobs under memory pressure; a task queue needs `maxmemory-policy noeviction` \
                 (set it in redis.conf, or CONFIG SET maxmemory-policy noeviction)",
                node.as_deref().unwrap_or(backend.target())
            ),
        ));
    }
    let persistent = persistence(backend).await;
    if persistent == Some(false) {
        tracing::warn!(server = %backend.target(), "Redis persistence is off (appendonly no, \
            save \"\"): every queued job is lost when the server restarts; enable \
            appendonly yes for a queue");
    }
    let appendfsync = fsync_policy(backend).await;
    Ok(ServerCheck {
        maxmemory_policy: policy,
        persistent,
        appendfsync,
    })
}

/// The `appendfsync` of a master that does not fsync every write, else of
/// the first master; warns (once) when such a master has AOF on.
async fn fsync_policy(backend: &RedisBackend) -> Option<String> {
    let aof = config_get(backend, "appendonly").await.ok()?;
    let fsync = config_get(backend, "appendfsync").await.ok()?;
    let lossy = aof.iter().zip(&fsync).find(|((_, aof), (_, fsync))| {
        aof.as_deref() == Some("yes") && fsync.as_deref().is_some_and(|f| f != "always")
    });
    if let Some((_, (node, fsync))) = lossy
        && !FSYNC_WARNED.swap(true, Ordering::Relaxed)
    {
        let server = if node.is_empty() {
            backend.target()
        } else {
            node.as_str()
        };
        tracing::warn!(%server, appendfsync = fsync.as_deref().unwrap_or_default(),
            "Redis appends to its AOF without fsyncing every write: a crash of the \
            server may lose jobs acknowledged within about the last second; set \
            appendfsync always for a queue that must lose nothing");
    }
    pick(fsync, |f| f != "always").1
}

/// The first node whose value is `bad`, else the first node's: the node
/// (`None` for a standalone server) and its value.
fn pick(
    values: Vec<(String, Option<String>)>,
    bad: impl Fn(&str) -> bool,
) -> (Option<String>, Option<String>) {
    let chosen = values
        .iter()
        .position(|(_, v)| v.as_deref().is_some_and(&bad))
        .unwrap_or(0);
    match values.into_iter().nth(chosen) {
        Some((node, value)) => ((!node.is_empty()).then_some(node), value),
        None => (None, None),
    }
}

/// True when AOF or RDB snapshots are on (on every master of a cluster);
/// `None` when unreadable.
async fn persistence(backend: &RedisBackend) -> Option<bool> {
    let aof = config_get(backend, "appendonly").await.ok()?;
    let save = config_get(backend, "save").await.ok()?;
    let mut all = true;
    for ((_, aof), (_, save)) in aof.iter().zip(&save) {
        let (aof, save) = (aof.as_deref()?, save.as_deref()?);
        all &= aof == "yes" || !save.trim().is_empty();
    }
    Some(all)
}

/// The value of one `CONFIG GET` parameter on the server (on every master
/// of a cluster, with its address); `None` when a server does not know it.
async fn config_get(
    backend: &RedisBackend,
    parameter: &str,
) -> Result<Vec<(String, Option<String>)>> {
    let mut get = redis::cmd("CONFIG");
    get.arg("GET").arg(parameter);
    let replies = backend
        .connection()
        .on_every_master(get)
        .await
        .map_err(|e| backend.map_error(&e))?;
    Ok(replies
        .into_iter()
        .map(|(node, reply)| (node, value_of(reply)))
        .collect())
}

/// A `CONFIG GET` reply's value; an error reply from a node is an error.
fn value_of(reply: Value) -> Option<String> {
    match reply {
        // RESP2: [name, value]; RESP3: {name: value}.
        Value::Array(items) => items.get(1).and_then(text),
        Value::Map(pairs) => pairs.first().and_then(|(_, v)| text(v)),
        _ => None,
    }
}
