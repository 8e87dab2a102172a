//! The replicas' health: checked once at connect (each must be a standby of
//! the primary's own cluster) and then measured in the background: lag in
//! bytes of WAL, up or down.

use std::sync::{Arc, Weak};
use std::time::Duration;

use reposmith_core::{Error, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

use super::{Replica, Replicas, WalPosition};
use crate::PoolerMode;
use crate::pooler::{Opened, open_replica};

/// What a server says about itself: in recovery, its cluster, its replay position.
struct Identity {
    in_recovery: bool,
    system: String,
    replayed: Option<WalPosition>,
}

/// One round trip in the simple query protocol (one message: safe behind a
/// transaction pooler, which may route each message to another server).
const IDENTITY_SQL: &str = "SELECT pg_is_in_recovery()::text, \
     (SELECT system_identifier FROM pg_control_system())::text, \
     pg_last_wal_replay_lsn()::text";

async fn identity(connection: &mut PgConnection) -> sqlx::Result<Identity> {
    let row = sqlx::raw_sql(IDENTITY_SQL)
        .fetch_one(&mut *connection)
        .await?;
    let replayed: Option<String> = row.try_get(2)?;
    Ok(Identity {
        in_recovery: row.try_get::<String, _>(0)? == "true",
        system: row.try_get(1)?,
        replayed: replayed.and_then(|text| text.parse().ok()),
    })
}

/// The primary's system identifier and current WAL position (a warning
/// when the primary URL names a standby: every write would fail with
/// SQLSTATE 25006).
pub(crate) async fn primary_system(
    connection: &mut PgConnection,
    url: &reposmith_core::ConnectionUrl,
) -> std::result::Result<(String, Option<WalPosition>), sqlx::Error> {
    let me = identity(connection).await?;
    if me.in_recovery {
        tracing::warn!(target: "reposmith.replica", primary = %url,
            "the primary URL names a server in recovery: writes will fail");
    }
    let head = head_of(connection).await?;
    Ok((me.system, head))
}

/// `pg_current_wal_lsn()` on a primary, in one simple-protocol exchange.
async fn head_of(connection: &mut PgConnection) -> sqlx::Result<Option<WalPosition>> {
    let row = sqlx::raw_sql("SELECT pg_current_wal_lsn()::text")
        .fetch_one(connection)
        .await?;
    Ok(row.try_get::<String, _>(0)?.parse().ok())
}

/// Why `replica` cannot serve as a replica of the cluster `system`, if it cannot.
fn refusal(replica: &Replica, me: &Identity, system: &str) -> Option<String> {
    if me.system != system {
        return Some(format!(
            "replica {} belongs to another PostgreSQL cluster (system identifier {}, the \
             primary's is {system}): it is not a standby of this primary",
            replica.url, me.system
        ));
    }
    if !me.in_recovery {
        return Some(format!(
            "replica {} is not in recovery: it is a primary (or was promoted), and reads \
             from it would not follow this primary's writes",
            replica.url
        ));
    }
    None
}

/// Checks `replica` at connect: a configuration error when it answers but
/// is not a standby of this primary; `Ok(false)` (start down, the probe
/// retries) when it does not answer.
pub(crate) async fn check_at_connect(
    replica: &Replica,
    (options, pooler): (&PgConnectOptions, PoolerMode),
    (system, head): (&str, Option<WalPosition>),
    timeout: Duration,
) -> Result<bool> {
    let attempt = tokio::time::timeout(timeout, async {
        let mut connection = match open_replica(pooler, options).await {
            Ok(connection) => connection,
            Err(Opened::Pooler(refusal)) => return Ok(Err(refusal)),
            Err(Opened::Failed(error)) => return Err(error),
        };
        let me = identity(&mut connection).await?;
        // Proven, so it serves the first read.
        replica.pool.adopt(connection);
        Ok::<_, sqlx::Error>(Ok(me))
    })
    .await;
    let attempt = match attempt {
        Ok(Ok(Err(refusal))) => {
            let reason = format!("replica {}: {refusal}", replica.url);
            return Err(Error::config("postgresql replicas", reason));
        }
        Ok(Ok(Ok(me))) => Ok(Ok(me)),
        Ok(Err(error)) => Ok(Err(error)),
        Err(elapsed) => Err(elapsed),
    };
    match attempt {
        Ok(Ok(me)) => match refusal(replica, &me, system) {
            Some(reason) => Err(Error::config("postgresql replicas", reason)),
            None => {
                if let Some(position) = me.replayed {
                    replica.saw_replayed(position);
                    if let Some(head) = head {
                        replica.set_lag(head.bytes_after(position));
                    }
                }
                Ok(true)
            }
        },
        Ok(Err(error)) => {
            let error = replica.url.scrub(&error.to_string());
            tracing::warn!(target: "reposmith.replica", replica = %replica.name, %error,
                "replica unreachable at connect: reads go elsewhere until it answers");
            Ok(false)
        }
        Err(_) => {
            tracing::warn!(target: "reposmith.replica", replica = %replica.name,
                "replica did not answer within the connect timeout: reads go elsewhere");
            Ok(false)
        }
    }
}

/// What the probe loop needs besides the replicas.
pub(crate) struct ProbeTarget {
    /// Whether a pooler is expected in front of the servers.
    pub(crate) pooler: PoolerMode,
    pub(crate) primary: PgConnectOptions,
    pub(crate) replicas: Vec<PgConnectOptions>,
    pub(crate) system: String,
}

/// Measures every replica each `probe_interval` until the backend is dropped.
pub(crate) fn spawn(replicas: &Arc<Replicas>, target: ProbeTarget) {
    let weak = Arc::downgrade(replicas);
    let task = tokio::spawn(run(weak, target));
    *replicas.probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
}

async fn run(replicas: Weak<Replicas>, target: ProbeTarget) {
    let count = target.replicas.len();
    let mut primary: Option<PgConnection> = None;
    let mut links: Vec<Option<PgConnection>> = (0..count).map(|_| None).collect();
    let mut blind = false;
    loop {
        let Some(set) = replicas.upgrade() else {
            return;
        };
        let every = set.config.probe_interval;
        let timeout = set.config.probe_timeout;
        // Replicas first, then the primary: lag is then over- rather than
        // under-estimated.
        let mut verdicts = Vec::with_capacity(count);
        for (i, replica) in set.members.iter().enumerate() {
            let me = measure(&mut links[i], (&target.replicas[i], target.pooler), timeout).await;
            verdicts.push(judge(replica, me, &target.system));
        }
        let head = position(&mut primary, &target.primary, timeout).await;
        note_blindness(&mut blind, head.is_none());
        for (replica, verdict) in set.members.iter().zip(verdicts) {
            apply(replica, verdict, head);
        }
        drop(set);
        tokio::time::sleep(every).await;
    }
}

/// What one probe of a replica found.
enum Verdict {
    /// Not usable, and why.
    Down(String),
    /// A standby of this primary at this replay position (if it has one).
    Standby(Option<WalPosition>),
}

/// Marks `replica` from `verdict`: its lag (from the primary's `head`,
/// when the primary answered) is set before it counts as up, so a replica
/// back from an outage is not served with the lag it had before.
fn apply(replica: &Replica, verdict: Verdict, head: Option<WalPosition>) {
    match verdict {
        Verdict::Down(reason) => replica.set_up(false, &reason),
        Verdict::Standby(replayed) => {
            if let (Some(head), Some(replayed)) = (head, replayed) {
                replica.set_lag(head.bytes_after(replayed));
            }
            replica.set_up(true, "answering and in recovery");
        }
    }
}

/// Logs once per outage that the primary's position cannot be read: lags
/// then keep their last measurement (unknown ones stay unknown, so such a
/// replica serves only reads pinned to replicas).
fn note_blindness(blind: &mut bool, now: bool) {
    if now && !*blind {
        tracing::warn!(target: "reposmith.replica",
            "the probe cannot read the primary's WAL position: replica lags are not updated");
    } else if !now && *blind {
        tracing::info!(target: "reposmith.replica", "the probe reads the primary again");
    }
    *blind = now;
}

/// What one measurement says about `replica`.
fn judge(replica: &Replica, me: std::result::Result<Identity, String>, system: &str) -> Verdict {
    match me {
        Ok(me) => match refusal(replica, &me, system) {
            Some(reason) => Verdict::Down(reason),
            None => {
                if let Some(replayed) = me.replayed {
                    replica.saw_replayed(replayed);
                }
                Verdict::Standby(me.replayed)
            }
        },
        Err(why) => Verdict::Down(replica.url.scrub(&why)),
    }
}

/// One bounded measurement on the probe's own connection (reopened when lost).
async fn measure(
    link: &mut Option<PgConnection>,
    (options, pooler): (&PgConnectOptions, PoolerMode),
    timeout: Duration,
) -> std::result::Result<Identity, String> {
    let attempt = tokio::time::timeout(timeout, async {
        if link.is_none() {
            // Checked like at connect: a replica URL that now leads to a
            // pooler (in Direct mode) is down, not served.
            *link = Some(open_replica(pooler, options).await.map_err(|e| match e {
                Opened::Pooler(refusal) => refusal.to_string(),
                Opened::Failed(error) => error.to_string(),
            })?);
        }
        let me = identity(link.as_mut().expect("just opened")).await;
        me.map_err(|e| e.to_string())
    })
    .await;
    match attempt {
        Ok(Ok(me)) => Ok(me),
        Ok(Err(error)) => {
            *link = None;
            Err(error)
        }
        Err(_) => {
            // Cut mid-statement: the connection is not reusable.
            *link = None;
            Err(format!("no answer within the probe timeout ({timeout:?})"))
        }
    }
}

/// The primary's current WAL write position, `None` when it does not answer.
async fn position(
    link: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    timeout: Duration,
) -> Option<WalPosition> {
    let attempt = tokio::time::timeout(timeout, async {
        if link.is_none() {
            *link = Some(PgConnection::connect_with(options).await?);
        }
        let connection = link.as_mut().expect("just opened");
        let row = sqlx::raw_sql("SELECT pg_current_wal_lsn()::text")
            .fetch_one(connection)
            .await?;
        row.try_get::<String, _>(0)
    })
    .await;
    match attempt {
        Ok(Ok(text)) => text.parse().ok(),
        _ => {
            *link = None;
            None
        }
    }
}
