//! [`PgUnitOfWork`]: one transaction on one held connection, shared by every
//! repository taken from it.
//!
//! A unit that ends any way but a successful `commit` or `rollback` —
//! dropped, cancelled at an await point, unwound by a panic, or failing while
//! it ends — *discards* its connection (detached from the pool and closed, so
//! the server rolls the transaction back) instead of returning it to the
//! pool. A pooled connection is therefore never idle in a transaction, at
//! the cost of one reconnect after an abandoned unit (sqlx issue 4393 is the
//! bug this avoids).
//!
//! Nested units are savepoints. Finish them before their parent; a nested
//! unit dropped without commit is rolled back to its savepoint before the
//! next statement of the transaction runs.

use std::sync::{Arc, Mutex as StdMutex};

use reposmith_core::{Backend, Entity, Error, Result};
use sqlx::{AssertSqlSafe, PgConnection};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::pool::PooledConnection;
use crate::{PgBackend, PgRepository};

/// Transaction isolation level of a unit of work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IsolationLevel {
    /// Each statement sees data committed before it began (Postgres' default).
    #[default]
    ReadCommitted,
    /// Every statement sees the snapshot taken at the first one.
    RepeatableRead,
    /// As if units ran one at a time; conflicts fail with a retryable error.
    Serializable,
}

impl IsolationLevel {
    fn begin_sql(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED",
            IsolationLevel::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            IsolationLevel::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        }
    }
}

/// The unit's connection, locked for one operation.
pub(crate) type UnitConnection<'a> = MappedMutexGuard<'a, PgConnection>;

/// State shared by a unit, its nested units and its repositories.
pub(crate) struct UnitShared {
    backend: PgBackend,
    /// `None` once the unit has ended.
    connection: Mutex<Option<PooledConnection>>,
    /// Savepoint depths whose nested unit was dropped without finishing.
    abandoned: StdMutex<Vec<usize>>,
}

impl UnitShared {
    pub(crate) fn backend(&self) -> &PgBackend {
        &self.backend
    }

    /// The connection for one statement, after rolling back abandoned savepoints.
    pub(crate) async fn lock(&self) -> Result<UnitConnection<'_>> {
        let guard = self.connection.lock().await;
        let mut connection =
            MutexGuard::try_map(guard, |c| c.as_deref_mut()).map_err(|_| ended())?;
        let abandoned =
            std::mem::take(&mut *self.abandoned.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(&outermost) = abandoned.iter().min() {
            let sql = format!(
                "ROLLBACK TO SAVEPOINT {sp}; RELEASE SAVEPOINT {sp}",
                sp = savepoint(outermost)
            );
            self.run(&mut connection, sql).await?;
        }
        Ok(connection)
    }

    /// Runs transaction-control SQL (no values, nothing from the user).
    async fn run(&self, connection: &mut PgConnection, sql: String) -> Result<()> {
        // Safe: transaction-control keywords and savepoint names built from an integer.
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(connection)
            .await
            .map(drop)
            .map_err(|e| self.backend.map_error(e))
    }

    /// Takes the connection out; the unit is over for every repository.
    async fn take(&self) -> Result<PooledConnection> {
        self.connection.lock().await.take().ok_or_else(ended)
    }
}

impl Drop for UnitShared {
    fn drop(&mut self) {
        let connection = self.connection.get_mut().take();
        if let Some(connection) = connection {
            discard(connection);
        }
    }
}

/// Closes a connection whose transaction state is unknown instead of pooling it.
fn discard(mut connection: PooledConnection) {
    tracing::debug!("discarding a connection left in a transaction");
    connection.discard();
}

fn ended() -> Error {
    Error::Unavailable {
        backend: Backend::Postgres,
        reason: "the unit of work has ended".to_owned(),
    }
}

fn savepoint(depth: usize) -> String {
    format!("reposmith_sp_{depth}")
}

/// A transaction: every repository from [`PgUnitOfWork::repo`] runs on it.
pub struct PgUnitOfWork {
    shared: Arc<UnitShared>,
    /// 0 for the transaction, n for the n-th nested savepoint.
    depth: usize,
    finished: bool,
}

impl PgBackend {
    /// Starts a unit of work at READ COMMITTED.
    pub async fn begin(&self) -> Result<PgUnitOfWork> {
        self.begin_with(IsolationLevel::default()).await
    }

    /// Starts a unit of work at `isolation`.
    pub async fn begin_with(&self, isolation: IsolationLevel) -> Result<PgUnitOfWork> {
        let connection = self.acquire().await?;
        // The unit owns the connection before BEGIN is sent, so a cancelled
        // or failed BEGIN discards it rather than pooling a half-open transaction.
        let unit = PgUnitOfWork {
            shared: Arc::new(UnitShared {
                backend: self.clone(),
                connection: Mutex::new(Some(connection)),
                abandoned: StdMutex::new(Vec::new()),
            }),
            depth: 0,
            finished: false,
        };
        let mut connection = unit.shared.lock().await?;
        let begin = isolation.begin_sql().to_owned();
        unit.shared.run(&mut connection, begin).await?;
        drop(connection);
        Ok(unit)
    }
}

impl PgUnitOfWork {
    /// The repository of `E` on this unit's transaction.
    pub fn repo<E: Entity>(&self) -> PgRepository<E> {
        PgRepository::on_unit(Arc::clone(&self.shared))
    }

    /// A nested unit: a savepoint that commits into this unit or rolls back alone.
    pub async fn nested(&self) -> Result<PgUnitOfWork> {
        let depth = self.depth + 1;
        let mut connection = self.shared.lock().await?;
        let sql = format!("SAVEPOINT {}", savepoint(depth));
        self.shared.run(&mut connection, sql).await?;
        drop(connection);
        let shared = Arc::clone(&self.shared);
        Ok(PgUnitOfWork {
            shared,
            depth,
            finished: false,
        })
    }

    /// Makes the unit's writes durable (or, nested, part of its parent).
    ///
    /// If the connection breaks after COMMIT was sent the outcome is unknown:
    /// [`Error::CommitOutcomeUnknown`], never retried here.
    pub async fn commit(mut self) -> Result<()> {
        self.finished = true;
        if self.depth > 0 {
            let sql = format!("RELEASE SAVEPOINT {}", savepoint(self.depth));
            return self.in_transaction(sql).await;
        }
        // Locking first rolls back savepoints of nested units that were dropped.
        drop(self.shared.lock().await?);
        let mut connection = self.shared.take().await?;
        match sqlx::raw_sql("COMMIT").execute(&mut *connection).await {
            Ok(_) => {
                // Committed and idle: the connection can serve the next caller.
                connection.ready();
                Ok(())
            }
            Err(err) => {
                discard(connection);
                Err(self.commit_error(err))
            }
        }
    }

    /// Undoes the unit's writes.
    pub async fn rollback(mut self) -> Result<()> {
        self.finished = true;
        if self.depth > 0 {
            let sp = savepoint(self.depth);
            let sql = format!("ROLLBACK TO SAVEPOINT {sp}; RELEASE SAVEPOINT {sp}");
            return self.in_transaction(sql).await;
        }
        let mut connection = self.shared.take().await?;
        match sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await {
            Ok(_) => {
                connection.ready();
                Ok(())
            }
            Err(err) => {
                discard(connection);
                Err(self.shared.backend.map_error(err))
            }
        }
    }

    async fn in_transaction(&self, sql: String) -> Result<()> {
        let mut connection = self.shared.lock().await?;
        self.shared.run(&mut connection, sql).await
    }

    fn commit_error(&self, err: sqlx::Error) -> Error {
        match err {
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => Error::CommitOutcomeUnknown {
                backend: Backend::Postgres,
                reason: err.to_string(),
            },
            other => self.shared.backend.map_error(other),
        }
    }
}

impl Drop for PgUnitOfWork {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.depth > 0 {
            let mut abandoned = self
                .shared
                .abandoned
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            abandoned.push(self.depth);
            return;
        }
        // An operation holding the lock right now (a repository used from another
        // task) keeps the connection until the last handle drops; `UnitShared`'s
        // Drop discards it then.
        if let Ok(mut guard) = self.shared.connection.try_lock()
            && let Some(connection) = guard.take()
        {
            discard(connection);
        }
    }
}

impl std::fmt::Debug for PgUnitOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUnitOfWork")
            .field("depth", &self.depth)
            .field("finished", &self.finished)
            .finish()
    }
}
