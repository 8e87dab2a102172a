//! Running one read: on a replica when one may serve it, after waiting for
//! the session's writes to be replayed there; once more on the primary when
//! the replica fails in a way the primary does not share.

use std::time::{Duration, Instant};

use reposmith_core::repository::BoxFuture;
use reposmith_core::{Backend, EntitySchema, Error, Result};
use sqlx::Row;
use sqlx::postgres::PgDatabaseError;

use super::{Choice, Replica, Replicas, Route, Session, WalPosition};
use crate::PgBackend;
use crate::executor::Held;
use crate::pool::AcquireError;

/// How one attempt on a replica ended.
enum Attempt<T> {
    /// An answer, or an error the primary would give too.
    Done(Result<T>),
    /// The read must run elsewhere, for this reason.
    Elsewhere(&'static str),
}

/// Longest pause between two looks at a replica's replay position.
const MAX_POLL: Duration = Duration::from_millis(20);

/// Past the server's `statement_timeout`, how long a replica read may go
/// unanswered before it counts as stalled and runs on the primary.
const REPLICA_STALL_SLACK: Duration = Duration::from_secs(1);

impl PgBackend {
    /// Runs the read `op` where `route` and the entity's `reads` send it.
    pub(crate) async fn read<T, F>(
        &self,
        route: &Route,
        schema: &'static EntitySchema,
        mut op: F,
    ) -> Result<T>
    where
        F: for<'c, 'h> FnMut(&'c mut Held<'h>) -> BoxFuture<'c, sqlx::Result<T>> + Send,
        T: Send,
    {
        let replicas = match &self.replicas {
            Some(replicas) if !route.primary_only(schema.reads) => replicas,
            Some(replicas) => {
                replicas.counters.on_primary();
                return self.read_on_primary(schema, &mut op).await;
            }
            None => return self.read_on_primary(schema, &mut op).await,
        };
        let want = route.session.as_ref().and_then(Session::position);
        if want == Some(WalPosition::UNKNOWN) {
            note_fallback(replicas, "the session's last write position is unknown");
            return self.read_on_primary(schema, &mut op).await;
        }
        let pinned = route.pin.is_some();
        let Choice::Replica { index } = replicas.choose(want, pinned) else {
            return self.no_replica(replicas, schema, &mut op).await;
        };
        let replica = &replicas.members[index];
        // A session's position is checked on the connection the read runs
        // on, even for a replica known to be past it: one replica URL may
        // lead to several standbys (a load balancer), each at its own position.
        match self
            .on_replica(replicas, replica, want, schema, &mut op)
            .await
        {
            Attempt::Done(result) => {
                replicas.serving_again();
                if result.is_ok() {
                    replica.answered();
                }
                result
            }
            Attempt::Elsewhere(reason) => {
                note_fallback(replicas, reason);
                self.read_on_primary(schema, &mut op).await
            }
        }
    }

    async fn read_on_primary<T, F>(&self, schema: &'static EntitySchema, op: &mut F) -> Result<T>
    where
        F: for<'c, 'h> FnMut(&'c mut Held<'h>) -> BoxFuture<'c, sqlx::Result<T>> + Send,
        T: Send,
    {
        tracing::Span::current().record("reposmith.server", "primary");
        let mut held = Held::Pooled(self.acquire_scoped().await?);
        let outcome = crate::pooler::run(&mut held, op).await;
        outcome.map_err(|failed| self.map_entity_error(failed.error, schema))
    }

    /// No replica may serve the read: the primary, or an error when so configured.
    async fn no_replica<T, F>(
        &self,
        replicas: &Replicas,
        schema: &'static EntitySchema,
        op: &mut F,
    ) -> Result<T>
    where
        F: for<'c, 'h> FnMut(&'c mut Held<'h>) -> BoxFuture<'c, sqlx::Result<T>> + Send,
        T: Send,
    {
        replicas.none_serving();
        if replicas.config.fallback == super::ReplicaFallback::Fail {
            return Err(Error::Unavailable {
                backend: Backend::Postgres,
                reason: "no replica can serve reads (all down, or lagging more than max_lag), \
                         and the replica fallback is `fail`"
                    .to_owned(),
            });
        }
        note_fallback(replicas, "no replica available");
        self.read_on_primary(schema, op).await
    }

    /// How long one read attempt on a replica may take (with no statement
    /// timeout, the client deadline's default).
    fn replica_attempt_limit(&self) -> Duration {
        self.statement_timeout().unwrap_or(Duration::from_secs(30)) + REPLICA_STALL_SLACK
    }

    /// What a read may spend before its attempt on the primary: the wait
    /// for its session's writes and an attempt on a replica; zero without
    /// replicas. The client-side deadline adds it (see `Bounded`).
    pub(crate) fn replica_budget(&self) -> Duration {
        match &self.replicas {
            Some(r) => r.config.read_your_writes_timeout + self.replica_attempt_limit(),
            None => Duration::ZERO,
        }
    }

    /// `error` from `replica`, naming the replica (its password masked).
    fn replica_error(
        &self,
        replica: &Replica,
        error: sqlx::Error,
        schema: &'static EntitySchema,
    ) -> Error {
        let mut context = self.error_context();
        context.url = &replica.url;
        context.map_for(error, schema)
    }

    /// One attempt on `replica`, waiting first for `want` to be replayed there.
    async fn on_replica<T, F>(
        &self,
        replicas: &Replicas,
        replica: &Replica,
        want: Option<WalPosition>,
        schema: &'static EntitySchema,
        op: &mut F,
    ) -> Attempt<T>
    where
        F: for<'c, 'h> FnMut(&'c mut Held<'h>) -> BoxFuture<'c, sqlx::Result<T>> + Send,
        T: Send,
    {
        let mut held = match replica.pool.acquire().await {
            Ok(connection) => Held::Pooled(connection),
            Err(AcquireError::Connect(error)) => {
                replica.set_up(false, &replica.url.scrub(&error.to_string()));
                return Attempt::Elsewhere("the replica refused a connection");
            }
            Err(AcquireError::Timeout) => return Attempt::Elsewhere("the replica's pool is busy"),
            Err(AcquireError::Closed) => return Attempt::Elsewhere("the replica's pool is closed"),
        };
        if let Some(want) = want {
            let deadline = replicas.config.read_your_writes_timeout;
            let started = Instant::now();
            let look = replicas.config.probe_timeout;
            let (caught_up, looks) = wait_for(&mut held, replica, want, deadline, look).await;
            let waited = started.elapsed().as_micros() as u64;
            // One look that found the position replayed is a check, not a wait.
            if !caught_up || looks > 1 {
                tracing::Span::current().record("reposmith.waited_us", waited);
                replicas.counters.waited(waited);
            }
            if !caught_up {
                return Attempt::Elsewhere("read-your-writes deadline passed on the replica");
            }
        }
        tracing::Span::current().record("reposmith.server", replica.name.as_str());
        // A replica that stops answering (frozen, partitioned) is cut here,
        // past the server's own statement timeout, so the read still has
        // its budget for the primary (see `Bounded`).
        let attempt = crate::pooler::run(&mut held, op);
        let Ok(outcome) = tokio::time::timeout(self.replica_attempt_limit(), attempt).await else {
            replica.set_up(false, "a read got no answer within statement_timeout + 1s");
            return Attempt::Elsewhere("the replica stopped answering");
        };
        match outcome.map_err(|failed| failed.error) {
            Ok(value) => Attempt::Done(Ok(value)),
            Err(error) => match elsewhere(&error) {
                Some(Retry { down, reason }) => {
                    if down {
                        replica.set_up(false, &replica.url.scrub(&error.to_string()));
                    }
                    Attempt::Elsewhere(reason)
                }
                None => Attempt::Done(Err(self.replica_error(replica, error, schema))),
            },
        }
    }
}

/// Polls the replica's replay position on `held` until it reaches `want`
/// (true) or `deadline` passes (false), with the number of looks taken. A
/// replica no longer in recovery is marked down. Positions only move forward, so once reached a read on the
/// same connection sees the session's writes.
async fn wait_for(
    held: &mut Held<'_>,
    replica: &Replica,
    want: WalPosition,
    deadline: Duration,
    look_limit: Duration,
) -> (bool, u32) {
    let until = Instant::now() + deadline;
    let mut pause = Duration::from_millis(1);
    let mut looks = 0;
    loop {
        looks += 1;
        let left = until.saturating_duration_since(Instant::now());
        let look = sqlx::raw_sql("SELECT pg_last_wal_replay_lsn()::text").fetch_one(&mut **held);
        // Each look may take a round trip, even the one at the deadline.
        let Ok(outcome) = tokio::time::timeout(left.max(look_limit), look).await else {
            // Cut mid-statement: the connection is closed, not pooled.
            return (false, looks);
        };
        held.settle(&outcome);
        let replayed = outcome
            .and_then(|row| row.try_get::<Option<String>, _>(0))
            .map(|text| text.and_then(|t| t.parse::<WalPosition>().ok()));
        match replayed {
            Ok(Some(position)) => {
                replica.saw_replayed(position);
                if position >= want {
                    return (true, looks);
                }
            }
            Ok(None) => {
                replica.set_up(false, "no longer in recovery (promoted?)");
                return (false, looks);
            }
            Err(error) => {
                replica.set_up(false, &replica.url.scrub(&error.to_string()));
                return (false, looks);
            }
        }
        // The last look is at the deadline, not a pause before it.
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, looks);
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// A read failure another server may not share.
struct Retry {
    /// The replica itself is gone (not just this statement).
    down: bool,
    reason: &'static str,
}

/// Whether a read that failed on a replica should run on the primary:
/// connection-level failures (the replica stopped), recovery conflicts
/// (SQLSTATE 40001/40P01: replay removed rows the query needed, or a lock
/// it held), the server shutting down or refusing connections (57P01-04,
/// class 08), out of connections (53300), or an object the replica has not
/// replayed yet (42P01, 42703, 42704, 42883). Errors in the query itself,
/// a statement timeout among them, would fail on the primary too and are
/// returned.
fn elsewhere(error: &sqlx::Error) -> Option<Retry> {
    let gone = |reason| Some(Retry { down: true, reason });
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            gone("the replica connection broke")
        }
        sqlx::Error::PoolClosed | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => {
            gone("the replica connection broke")
        }
        sqlx::Error::Database(db) => {
            let code = db.try_downcast_ref::<PgDatabaseError>()?.code().to_owned();
            match code.as_str() {
                "40001" | "40P01" => Some(Retry {
                    down: false,
                    reason: "recovery conflict on the replica",
                }),
                "53300" => Some(Retry {
                    down: false,
                    reason: "the replica has no connection slot free",
                }),
                // The server going away (admin shutdown, crash, not yet
                // accepting, database dropped); 57014, a statement timeout or
                // cancel, is the query's own and would recur on the primary.
                "57P01" | "57P02" | "57P03" | "57P04" => {
                    gone("the replica is shutting down or refused the session")
                }
                c if c.starts_with("08") => gone("the replica connection broke"),
                // A table, column, type or function the replica has not
                // replayed yet (a migration just applied on the primary).
                "42P01" | "42703" | "42704" | "42883" => Some(Retry {
                    down: false,
                    reason: "the replica has not replayed a schema change yet",
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Records on the read's span that it ran on the primary instead, and why.
fn note_fallback(replicas: &Replicas, reason: &'static str) {
    replicas.counters.fell_back();
    replicas.counters.on_primary();
    tracing::Span::current().record("reposmith.fallback", reason);
    tracing::debug!(target: "reposmith.replica", reason, "read runs on the primary");
}
