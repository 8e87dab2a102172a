//! Where a repository's statements run: the pool (one connection per
//! operation) or, inside a unit of work, the one connection holding its
//! transaction. Every operation asks the executor for a connection and runs
//! on `&mut PgConnection`, so the same code serves both. Pool operations
//! go through [`Executor::read`] and [`Executor::write`], which run them in
//! the statement shape of the pooler mode (see the `pooler` module).

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use reposmith_core::repository::BoxFuture;
use reposmith_core::{Backend, EntitySchema, Error, Result};
use sqlx::PgConnection;

use crate::PgBackend;
use crate::pool::PooledConnection;
use crate::unit::{UnitConnection, UnitShared};

/// The source of connections for a repository.
#[derive(Clone)]
pub(crate) enum Executor {
    /// A pooled connection per operation, returned when the operation ends
    /// (boxed: a backend handle is large next to a unit's `Arc`).
    Pool(Box<PgBackend>),
    /// The connection of a unit of work, shared by its repositories, for
    /// the unit (or nested unit) at this level.
    Unit(std::sync::Arc<UnitShared>, usize),
}

/// A connection borrowed for one operation.
pub(crate) enum Held<'a> {
    /// From the pool; goes back when dropped if its last statement settled cleanly.
    Pooled(PooledConnection),
    /// The unit of work's connection, locked for this operation; poisons
    /// the unit when dropped before a successful settle (a cancelled or
    /// failed statement aborts the transaction), and marks it cut when
    /// dropped before any settle (a statement cut mid-protocol: the
    /// connection may be waiting on a reply that never comes).
    Unit {
        connection: UnitConnection<'a>,
        shared: &'a UnitShared,
        settled: bool,
        answered: bool,
    },
}

impl Held<'_> {
    /// Records how a statement ended, so a pooled connection is reused only
    /// when it is ready for the next query; a unit's connection ends with the unit.
    pub(crate) fn settle<T>(&mut self, outcome: &sqlx::Result<T>) {
        match self {
            Held::Pooled(connection) => connection.settle(outcome),
            Held::Unit {
                settled, answered, ..
            } => {
                *settled = outcome.is_ok();
                *answered = true;
            }
        }
    }

    /// The pooled connection; `None` for a unit's.
    pub(crate) fn pooled(&mut self) -> Option<&mut PooledConnection> {
        match self {
            Held::Pooled(connection) => Some(connection),
            Held::Unit { .. } => None,
        }
    }

    /// Whether the last statement left the session ready for another.
    pub(crate) fn is_ready(&self) -> bool {
        match self {
            Held::Pooled(connection) => connection.is_ready(),
            Held::Unit { settled, .. } => *settled,
        }
    }

    /// Whether statements on it already run inside a transaction: a unit's,
    /// or the one the pooler shape opened around this operation.
    pub(crate) fn in_transaction(&self) -> bool {
        match self {
            Held::Pooled(connection) => connection.transaction_open(),
            Held::Unit { .. } => true,
        }
    }
}

impl Deref for Held<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Held::Pooled(connection) => connection,
            Held::Unit { connection, .. } => connection,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Held::Unit {
            shared,
            settled: false,
            answered,
            ..
        } = self
        {
            shared.poison();
            if !*answered {
                shared.cut();
            }
        }
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Held::Pooled(connection) => connection,
            Held::Unit { connection, .. } => connection,
        }
    }
}

impl Executor {
    /// The backend, for error mapping.
    /// The tenant repositories on this executor are restricted to: the
    /// backend handle's, which a unit inherits from the handle it began on.
    pub(crate) fn tenant(&self) -> Option<&reposmith_core::Tenant> {
        self.backend().tenant.as_ref().map(|t| &t.tenant)
    }

    pub(crate) fn backend(&self) -> &PgBackend {
        match self {
            Executor::Pool(backend) => backend,
            Executor::Unit(shared, _) => shared.backend(),
        }
    }

    /// A connection for one operation, as it comes: on the pool, statements
    /// on it are in no transaction. Behind a transaction pooler that is safe
    /// only for one simple-protocol statement, so pool operations go through
    /// [`Executor::read`] or [`Executor::write`] instead, and statement
    /// sequences of their own (`bulk`) run in a unit there
    /// ([`Executor::statements_stand_alone`]).
    pub(crate) async fn acquire(&self) -> Result<Held<'_>> {
        match self {
            Executor::Pool(backend) => backend.acquire_scoped().await.map(Held::Pooled),
            Executor::Unit(shared, level) => {
                let connection = shared.lock_at(*level).await?;
                Ok(Held::Unit {
                    connection,
                    shared,
                    settled: false,
                    answered: false,
                })
            }
        }
    }

    /// Runs the read `op` on a connection: in a unit, the unit's; on the
    /// pool, the primary's or a replica's, as `route` and the entity's
    /// `#[repo(reads = "..")]` decide (see the `replica` module). `op` may
    /// run twice (once more on the primary when a replica fails), so it
    /// must clone what it binds.
    pub(crate) async fn read<T, F>(
        &self,
        route: &crate::replica::Route,
        schema: &'static EntitySchema,
        op: F,
    ) -> Result<T>
    where
        F: for<'c, 'h> FnMut(&'c mut Held<'h>) -> BoxFuture<'c, sqlx::Result<T>> + Send,
        T: Send,
    {
        match self {
            Executor::Pool(backend) => backend.read(route, schema, op).await,
            Executor::Unit(..) => {
                tracing::Span::current().record("reposmith.server", "primary");
                let mut held = self.acquire().await?;
                let outcome = crate::pooler::run(&mut held, op).await;
                outcome.map_err(|failed| self.map_err(schema)(failed.error))
            }
        }
    }

    /// Runs the write `op` on the unit's connection or a pooled one to the
    /// primary, in the pooler mode's statement shape. A failed `COMMIT` of
    /// that shape, or an autocommit write, whose connection broke is
    /// [`Error::CommitOutcomeUnknown`].
    pub(crate) async fn write<T, F>(&self, schema: &'static EntitySchema, op: F) -> Result<T>
    where
        F: for<'c, 'h> FnOnce(&'c mut Held<'h>) -> BoxFuture<'c, sqlx::Result<T>> + Send,
        T: Send,
    {
        let mut held = self.acquire().await?;
        // An autocommit statement is its own COMMIT: once sent, a broken
        // connection leaves its outcome unknown, as for a unit's COMMIT.
        let autocommit = self.statements_stand_alone() && !self.in_unit();
        match crate::pooler::run(&mut held, op).await {
            Ok(value) => Ok(value),
            Err(failed) if failed.at_commit || autocommit => Err(crate::unit::commit_error_for(
                self.backend(),
                failed.error,
                schema,
            )),
            Err(failed) => Err(self.map_err(schema)(failed.error)),
        }
    }

    /// Whether a statement sent on a connection from [`Executor::acquire`]
    /// is correct by itself: on a direct pool (autocommit) and in a unit,
    /// yes; behind a transaction pooler, no (see the `pooler` module).
    pub(crate) fn statements_stand_alone(&self) -> bool {
        match self {
            Executor::Pool(backend) => backend.pooler() == crate::PoolerMode::Direct,
            Executor::Unit(..) => true,
        }
    }

    /// True when statements already run inside a transaction the caller owns.
    pub(crate) fn in_unit(&self) -> bool {
        matches!(self, Executor::Unit(..))
    }

    /// Maps a sqlx error of an operation on `schema`'s table.
    pub(crate) fn map_err(
        &self,
        schema: &'static EntitySchema,
    ) -> impl Fn(sqlx::Error) -> Error + '_ {
        move |err| self.backend().map_entity_error(err, schema)
    }
}

/// Slack past the server's `statement_timeout` before the client gives up:
/// the server's own timeout should fire first; this one catches a network
/// or server that stopped answering altogether.
pub(crate) const CLIENT_DEADLINE_SLACK: Duration = Duration::from_secs(5);

/// A client-side deadline on a whole repository operation, so no wait is
/// unbounded even when the server or the network stalls. Cutting an
/// operation is safe: a pooled connection is then closed, and a unit of
/// work is poisoned (see `unit.rs`).
pub(crate) trait Bounded<T>: Future<Output = Result<T>> + Sized {
    /// `self`, failing with [`Error::Timeout`] after `statement_timeout` plus
    /// slack; with replicas, plus what a read may spend before its attempt
    /// on the primary (its session's wait and a replica's attempt), so a
    /// read cut on a stalled replica still gets its full time there.
    fn bounded(self, exec: &Executor) -> impl Future<Output = Result<T>> {
        let backend = exec.backend();
        let deadline = backend
            .statement_timeout()
            .map(|t| t + CLIENT_DEADLINE_SLACK + backend.replica_budget());
        async move {
            let Some(after) = deadline else {
                return self.await;
            };
            tokio::time::timeout(after, self)
                .await
                .unwrap_or(Err(Error::Timeout {
                    backend: Backend::Postgres,
                    operation: "an operation (client-side deadline)",
                    after,
                }))
        }
    }
}

impl<T, F: Future<Output = Result<T>>> Bounded<T> for F {}
