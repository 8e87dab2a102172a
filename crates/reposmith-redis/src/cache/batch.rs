//! Running a batch of cache commands in one round trip: one pipeline on a
//! standalone server; on a cluster one pipeline per slot, all sent at once
//! (the driver sends a pipeline to the slot of its first key and refuses
//! one whose keys span slots, so a batch is split by slot here).
//!
//! Scripts go as `EVALSHA`; the ones answered `NOSCRIPT` (a restarted
//! server, a promoted replica: an empty script cache) are sent once more
//! as `EVAL` with their source, which also caches them on that server.

use std::collections::HashMap;

use redis::cluster_routing::Slot;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Value};

use super::scripts::Lua;
use crate::RedisConnection;

/// One command of a batch.
pub(crate) struct Op {
    /// The key that routes it on a cluster.
    route: String,
    kind: Kind,
}

enum Kind {
    Script {
        lua: &'static Lua,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
    },
    Command(Cmd),
}

impl Op {
    /// `lua` with `keys` (the first routes it) and `args`.
    pub(crate) fn script(lua: &'static Lua, keys: Vec<String>, args: Vec<Vec<u8>>) -> Op {
        Op {
            route: keys.first().cloned().unwrap_or_default(),
            kind: Kind::Script { lua, keys, args },
        }
    }

    /// A plain command on `key`.
    pub(crate) fn command(key: &str, cmd: Cmd) -> Op {
        Op {
            route: key.to_owned(),
            kind: Kind::Command(cmd),
        }
    }

    fn cmd(&self, with_source: bool) -> Cmd {
        match &self.kind {
            Kind::Command(cmd) => cmd.clone(),
            Kind::Script { lua, keys, args } => {
                let mut cmd = match with_source {
                    true => redis::cmd("EVAL").arg(lua.code()).to_owned(),
                    false => redis::cmd("EVALSHA").arg(lua.hash()).to_owned(),
                };
                cmd.arg(keys.len()).arg(keys).arg(args);
                cmd
            }
        }
    }
}

/// Runs `ops` and returns their replies in order; the first command that
/// failed (after the `NOSCRIPT` retry) fails the batch.
pub(crate) async fn run(conn: &RedisConnection, ops: &[Op]) -> RedisResult<Vec<Value>> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    let all: Vec<usize> = (0..ops.len()).collect();
    let mut replies = send(conn, ops, &all, false).await?;
    let unknown: Vec<usize> = replies
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Err(e) if e.code() == Some("NOSCRIPT")))
        .map(|(i, _)| i)
        .collect();
    if !unknown.is_empty() {
        let again = send(conn, ops, &unknown, true).await?;
        for (i, reply) in unknown.into_iter().zip(again) {
            replies[i] = reply;
        }
    }
    replies.into_iter().collect()
}

/// Sends `ops[which]`, one pipeline per slot on a cluster, and returns one
/// reply per index of `which`, in its order.
async fn send(
    conn: &RedisConnection,
    ops: &[Op],
    which: &[usize],
    with_source: bool,
) -> RedisResult<Vec<RedisResult<Value>>> {
    if !conn.is_cluster() {
        return pipeline(conn.clone(), ops, which, with_source).await;
    }
    let mut groups: HashMap<Slot, Vec<usize>> = HashMap::new();
    for &i in which {
        groups
            .entry(Slot::for_key(&ops[i].route))
            .or_default()
            .push(i);
    }
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    let sent = groups
        .iter()
        .map(|group| pipeline(conn.clone(), ops, group, with_source));
    let results = futures_util::future::join_all(sent).await;
    let mut by_index: HashMap<usize, RedisResult<Value>> = HashMap::with_capacity(which.len());
    for (group, replies) in groups.iter().zip(results) {
        for (&i, reply) in group.iter().zip(replies?) {
            by_index.insert(i, reply);
        }
    }
    which
        .iter()
        .map(|i| by_index.remove(i).ok_or_else(short_reply))
        .collect()
}

async fn pipeline(
    mut conn: RedisConnection,
    ops: &[Op],
    which: &[usize],
    with_source: bool,
) -> RedisResult<Vec<RedisResult<Value>>> {
    let mut pipe = Pipeline::with_capacity(which.len());
    pipe.ignore_errors();
    for &i in which {
        pipe.add_command(ops[i].cmd(with_source));
    }
    let replies: Vec<RedisResult<Value>> = pipe.query_async(&mut conn).await?;
    match replies.len() == which.len() {
        true => Ok(replies),
        false => Err(short_reply()),
    }
}

fn short_reply() -> RedisError {
    unexpected("pipeline")
}

/// The error for a reply of the wrong shape (another script version
/// answered, or a key holds something else).
pub(crate) fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected reply from a cache command",
        what.to_owned(),
    ))
}
