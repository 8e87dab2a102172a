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
//! Nested units are savepoints, each with a name of its own. Savepoints are
//! a stack: finish nested units before their parent and younger siblings
//! before older ones (finishing an older one first releases the younger's
//! savepoint, and the younger then fails with SQLSTATE 3B001 rather than
//! touching the wrong work). A nested unit dropped without commit is rolled
//! back to its savepoint before the next statement of the transaction runs.
//!
//! A statement that fails or is cancelled inside a unit *poisons* it:
//! Postgres has aborted the transaction (and answers a later COMMIT with a
//! silent ROLLBACK), so `commit` rolls back and reports
//! [`Error::Backend`] with SQLSTATE 25P02 instead of claiming success.
//! Rolling back a nested unit to its savepoint clears the poison, as it
//! makes the transaction usable again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use reposmith_core::cache::{INVALIDATION_TOPIC, Invalidation, PendingInvalidations};
use reposmith_core::job::{DEFAULT_MAX_PAYLOAD, Job, JobEnvelope, StartAt};
use reposmith_core::outbox::{Event, PendingMessages};
use reposmith_core::{Backend, Entity, Error, PostgresEntity, Result};
use sqlx::postgres::{PgDatabaseError, PgSeverity};
use sqlx::{AssertSqlSafe, PgConnection};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use uuid::Uuid;

use crate::PoolerMode;
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
    /// Savepoints whose nested unit was dropped without finishing.
    abandoned: StdMutex<Vec<usize>>,
    /// A statement failed or was cancelled: the transaction is aborted.
    poisoned: AtomicBool,
    /// A statement was cut before any reply (cancelled, or past the client
    /// deadline): the connection may still wait on the server, so the unit
    /// ends by closing it rather than sending ROLLBACK into it.
    cut: AtomicBool,
    /// Source of savepoint names, so sibling nested units never share one.
    next_savepoint: AtomicUsize,
    /// Savepoints of the nested units still open, oldest first.
    live: StdMutex<Vec<usize>>,
    /// Jobs and events recorded for the outbox, written just before COMMIT.
    outbox: PendingMessages,
    /// Cache entries the unit's writes invalidate, applied after COMMIT.
    pub(crate) invalidations: PendingInvalidations,
    /// The session that records the commit's WAL position ([`PgUnitOfWork::in_session`]).
    session: StdMutex<Option<crate::replica::Session>>,
}

impl UnitShared {
    pub(crate) fn backend(&self) -> &PgBackend {
        &self.backend
    }

    /// Records the unit's commit in `session` too.
    pub(crate) fn follow(&self, session: &crate::replica::Session) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session.clone());
    }

    /// Records that the transaction is aborted (a failed or cancelled statement).
    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    /// Records that a statement was cut mid-protocol (see `cut`).
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
    }

    fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// The connection for a statement of the unit at `level`, which must be
    /// the innermost open one: a statement of an outer unit issued while a
    /// nested one is open would land inside the nested unit's savepoint and
    /// be undone by its rollback.
    pub(crate) async fn lock_at(&self, level: usize) -> Result<UnitConnection<'_>> {
        let connection = self.lock().await?;
        let innermost = self.live_list().last().copied().unwrap_or(0);
        if innermost != level {
            return Err(out_of_order(
                "this unit is locked while a nested unit opened from it is still open: run \
                 statements through the nested unit's repositories, open a further nested \
                 unit from the nested unit (`child.nested()`), or commit or roll back the \
                 nested unit first",
            ));
        }
        Ok(connection)
    }

    /// The connection for one statement, after rolling back abandoned savepoints.
    pub(crate) async fn lock(&self) -> Result<UnitConnection<'_>> {
        let guard = self.connection.lock().await;
        let mut connection =
            MutexGuard::try_map(guard, |c| c.as_deref_mut()).map_err(|_| ended())?;
        // Only savepoints still open can be rolled back: one a parent's
        // rollback already removed (a child handle dropped after its
        // parent) is gone, and naming it would abort the transaction.
        let live = self.live_list().clone();
        self.abandoned_list().retain(|sp| live.contains(sp));
        let outermost = self.abandoned_list().iter().min().copied();
        if let Some(outermost) = outermost {
            // Rolling back to the oldest abandoned savepoint also removes every
            // later one; the list is cleared only once that has happened.
            let sql = format!(
                "ROLLBACK TO SAVEPOINT {sp}; RELEASE SAVEPOINT {sp}",
                sp = savepoint(outermost)
            );
            match self.run(&mut connection, sql).await {
                Ok(()) => {
                    self.outbox.roll_back_to(outermost);
                    self.invalidations.roll_back_to(outermost);
                    self.abandoned_list().retain(|&sp| sp < outermost);
                    self.live_list().retain(|&sp| sp < outermost);
                    self.poisoned.store(false, Ordering::Release);
                }
                Err(error) => {
                    self.poison();
                    return Err(error);
                }
            }
        }
        Ok(connection)
    }

    fn abandoned_list(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.abandoned.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live_list(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs transaction-control SQL (no values, nothing from the user),
    /// within the client-side deadline: a stalled connection fails it with
    /// `Timeout` instead of hanging, and the connection, cut mid-protocol,
    /// is closed with the unit.
    async fn run(&self, connection: &mut PgConnection, sql: String) -> Result<()> {
        // Safe: transaction-control keywords and savepoint names built from an integer.
        let sent = sqlx::raw_sql(AssertSqlSafe(sql)).execute(connection);
        let Some(after) = client_deadline(&self.backend) else {
            return sent.await.map(drop).map_err(|e| self.backend.map_error(e));
        };
        match tokio::time::timeout(after, sent).await {
            Ok(outcome) => outcome.map(drop).map_err(|e| self.backend.map_error(e)),
            Err(_) => Err(Error::Timeout {
                backend: Backend::Postgres,
                operation: "transaction control (client-side deadline)",
                after,
            }),
        }
    }

    /// Runs one of the commit's own statements (the outbox lookup and the
    /// outbox write) within the client-side deadline. Past it the
    /// connection is cut mid-protocol and the unit poisoned, so the ROLLBACK
    /// that follows closes the connection instead of waiting behind the
    /// stalled reply.
    async fn within_deadline<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let Some(after) = client_deadline(&self.backend) else {
            return work.await;
        };
        match tokio::time::timeout(after, work).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.cut();
                self.poison();
                Err(Error::Timeout {
                    backend: Backend::Postgres,
                    operation,
                    after,
                })
            }
        }
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

fn poisoned() -> Error {
    Error::Backend {
        backend: Backend::Postgres,
        code: Some("25P02".to_owned()),
        reason: "the unit of work was rolled back: a statement in it failed or was cancelled, \
                 which aborts a Postgres transaction (run risky statements in a nested unit \
                 and roll it back to continue)"
            .to_owned(),
    }
}

fn out_of_order(reason: &str) -> Error {
    Error::invalid("unit of work", "nested unit", reason)
}

fn savepoint(id: usize) -> String {
    format!("reposmith_sp_{id}")
}

/// A failed COMMIT: lost connection, FATAL or PANIC mean the server may
/// have committed before it went away ("outcome unknown"); an ERROR
/// (serialization failure, deferred constraint) means it rolled back.
pub(crate) fn commit_error(backend: &PgBackend, err: sqlx::Error) -> Error {
    if ended_idle_in_transaction(&err) {
        // 25P03 is raised only while the session waits, idle, inside its
        // transaction: before COMMIT was read, so nothing was committed.
        return Error::ConnectionLost {
            backend: Backend::Postgres,
            reason: format!(
                "the server ended the unit's session while it sat idle in its transaction \
                 (idle_in_transaction_session_timeout); nothing was committed: {}",
                backend.scrub(&err.to_string())
            ),
        };
    }
    let session_gone = match &err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|e| !matches!(e.severity(), PgSeverity::Error)),
        _ => false,
    };
    match session_gone {
        true => Error::CommitOutcomeUnknown {
            backend: Backend::Postgres,
            reason: format!(
                "the connection broke after COMMIT was sent: {}",
                backend.scrub(&err.to_string())
            ),
        },
        false => backend.map_error(err),
    }
}

/// [`commit_error`] for a statement on `schema`'s table: an error the
/// server answered (a conflict, a refused value) keeps its entity mapping.
pub(crate) fn commit_error_for(
    backend: &PgBackend,
    err: sqlx::Error,
    schema: &'static reposmith_core::EntitySchema,
) -> Error {
    let answered = matches!(&err, sqlx::Error::Database(db)
        if db.try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|e| matches!(e.severity(), PgSeverity::Error)));
    match answered {
        true => backend.map_entity_error(err, schema),
        false => commit_error(backend, err),
    }
}

/// Whether `err` is FATAL 25P03, `idle_in_transaction_session_timeout`.
fn ended_idle_in_transaction(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    db.try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|e| e.code() == "25P03")
}

/// How long transaction control may wait for the server: the repository
/// operations' client deadline (`statement_timeout` plus slack), none
/// without a statement timeout.
fn client_deadline(backend: &PgBackend) -> Option<std::time::Duration> {
    backend
        .statement_timeout()
        .map(|t| t + crate::executor::CLIENT_DEADLINE_SLACK)
}

/// A COMMIT or ROLLBACK that got no reply in time, as the I/O failure it
/// is: for a COMMIT already sent that is an unknown outcome (`commit_error`).
fn no_reply_within(after: std::time::Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no reply from the server within the client-side deadline ({after:?})"),
    ))
}

/// A transaction: every repository from [`PgUnitOfWork::repo`] runs on it.
pub struct PgUnitOfWork {
    shared: Arc<UnitShared>,
    /// `None` for the transaction itself, the savepoint of a nested unit.
    savepoint: Option<usize>,
    finished: bool,
}

impl PgBackend {
    /// Starts a unit of work at READ COMMITTED.
    pub async fn begin(&self) -> Result<PgUnitOfWork> {
        self.begin_with(IsolationLevel::default()).await
    }

    /// Starts a unit of work at `isolation`.
    pub async fn begin_with(&self, isolation: IsolationLevel) -> Result<PgUnitOfWork> {
        let connection = self.acquire_scoped().await?;
        // Behind a transaction pooler the session settings come with BEGIN,
        // in the same round trip (see the `pooler` module).
        let begin = match connection.transaction_settings() {
            Some(settings) => settings.begin(isolation.begin_sql()),
            None => isolation.begin_sql().to_owned(),
        };
        // The unit owns the connection before BEGIN is sent, so a cancelled
        // or failed BEGIN discards it rather than pooling a half-open transaction.
        let unit = PgUnitOfWork {
            shared: Arc::new(UnitShared {
                backend: self.clone(),
                connection: Mutex::new(Some(connection)),
                abandoned: StdMutex::new(Vec::new()),
                poisoned: AtomicBool::new(false),
                cut: AtomicBool::new(false),
                next_savepoint: AtomicUsize::new(1),
                live: StdMutex::new(Vec::new()),
                outbox: PendingMessages::new(),
                invalidations: PendingInvalidations::new(),
                session: StdMutex::new(None),
            }),
            savepoint: None,
            finished: false,
        };
        let mut connection = unit.shared.lock().await?;
        unit.shared.run(&mut connection, begin).await?;
        // Direct mode: the session already carries the tenant
        // (`acquire_scoped`); behind a pooler the transaction sets it.
        let local = self
            .tenant_setting()
            .filter(|_| self.pooler() != PoolerMode::Direct);
        if let Some(tenant) = local {
            let set = sqlx::query(crate::tenant::SET_LOCAL_TENANT)
                .bind(&**tenant)
                .persistent(false)
                .execute(&mut *connection)
                .await;
            set.map_err(|e| self.map_error(e))?;
        }
        drop(connection);
        Ok(unit)
    }
}

impl PgUnitOfWork {
    /// The repository of `E` on this unit's transaction.
    pub fn repo<E: PostgresEntity>(&self) -> PgRepository<E> {
        self.repo_of()
    }

    /// [`repo`](Self::repo) for code already holding a repository of `E`,
    /// which proves Postgres stores it.
    pub(crate) fn repo_of<E: Entity>(&self) -> PgRepository<E> {
        PgRepository::on_unit(Arc::clone(&self.shared), self.savepoint.unwrap_or(0))
    }

    /// A nested unit: a savepoint that commits into this unit or rolls back alone.
    ///
    /// While the nested unit is open, this unit is locked: its repositories
    /// and a second `nested()` on it fail with [`Error::InvalidInput`] (field
    /// `nested unit`), because a statement issued through it would land inside
    /// the nested unit's savepoint and be undone by the nested rollback.
    /// Work through the nested unit's repositories; a deeper level opens from
    /// the nested unit, not from this one; once the nested unit is committed
    /// or rolled back, this unit is usable again (and can open another).
    ///
    /// ```no_run
    /// # async fn demo(backend: reposmith_postgres::PgBackend) -> reposmith_core::Result<()> {
    /// let unit = backend.begin().await?;
    /// let child = unit.nested().await?; // `unit` is locked until `child` ends
    /// let grandchild = child.nested().await?; // opened from `child`, not from `unit`
    /// grandchild.rollback().await?; // undoes only the grandchild's writes
    /// child.commit().await?; // releases into `unit`
    /// let sibling = unit.nested().await?; // `unit` is free again
    /// sibling.commit().await?;
    /// unit.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn nested(&self) -> Result<PgUnitOfWork> {
        let id = self.shared.next_savepoint.fetch_add(1, Ordering::Relaxed);
        let mut connection = self.shared.lock_at(self.savepoint.unwrap_or(0)).await?;
        let sql = format!("SAVEPOINT {}", savepoint(id));
        self.shared.run(&mut connection, sql).await?;
        self.shared.live_list().push(id);
        drop(connection);
        Ok(PgUnitOfWork {
            shared: Arc::clone(&self.shared),
            savepoint: Some(id),
            finished: false,
        })
    }

    /// Makes the unit's writes durable (or, nested, part of its parent).
    ///
    /// A unit poisoned by a failed or cancelled statement is rolled back and
    /// reported as SQLSTATE 25P02. If the connection breaks after COMMIT was
    /// sent the outcome is unknown: [`Error::CommitOutcomeUnknown`], never
    /// retried here.
    pub async fn commit(mut self) -> Result<()> {
        if let Some(id) = self.savepoint {
            let released = self
                .end_nested(id, format!("RELEASE SAVEPOINT {}", savepoint(id)))
                .await;
            self.finished = true;
            return released;
        }
        // Locking first rolls back savepoints of nested units that were
        // dropped, and refuses while a nested unit is still open.
        drop(self.shared.lock_at(0).await?);
        if self.shared.is_poisoned() {
            let _ = self.end_transaction("ROLLBACK").await;
            self.finished = true;
            return Err(poisoned());
        }
        let invalidation = self.shared.invalidations.take();
        let recorded = self.record_invalidation(&invalidation).await;
        if let Err(error) = recorded.and(self.write_outbox().await) {
            let _ = self.end_transaction("ROLLBACK").await;
            self.finished = true;
            return Err(error);
        }
        // Armed before COMMIT is sent: a commit() cancelled from here on may
        // have committed, so the guard still invalidates (see `Cache::arm`).
        let pending = match (&self.shared.backend.cache, invalidation.is_empty()) {
            (Some(cache), false) => Some(cache.arm(invalidation)),
            _ => None,
        };
        // Armed before COMMIT is sent, like the cache's guard: a commit()
        // cut from here on may have committed without the session knowing.
        let track = crate::replica::TrackGuard::new(self.session());
        let ended = self.end_transaction("COMMIT").await;
        self.finished = true;
        let ended = ended.map_err(|err| self.commit_error(err));
        // After COMMIT, never before; also when the outcome is unknown (an
        // extra invalidation costs a miss, a missing one a stale read).
        if let Some(pending) = pending {
            match &ended {
                Ok(()) | Err(Error::CommitOutcomeUnknown { .. }) => {
                    pending.apply().await;
                }
                Err(_) => pending.disarm(),
            }
        }
        self.track_commit(&ended).await;
        track.disarm();
        ended
    }

    /// The session following the unit, if any.
    fn session(&self) -> Option<crate::replica::Session> {
        self.shared
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After COMMIT: the session following the unit records its position
    /// (also when the outcome is unknown: a read that waits for nothing
    /// it needs costs only the wait).
    async fn track_commit(&self, ended: &Result<()>) {
        if let (Some(session), Ok(()) | Err(Error::CommitOutcomeUnknown { .. })) =
            (self.session(), ended)
        {
            self.shared.backend.track_commit(&session).await;
        }
    }

    /// Records this unit's commit in `session`, so the session's reads on a
    /// replica wait for it (see [`Session`](crate::Session)). A nested unit
    /// records through its outermost unit.
    pub fn in_session(&self, session: &crate::replica::Session) {
        self.shared.follow(session);
    }

    /// Puts the unit's cache invalidation in its outbox (when the cache's
    /// invalidations are durable), so the relay replays it if applying it
    /// after COMMIT fails. Split into messages of bounded size.
    async fn record_invalidation(&self, invalidation: &Invalidation) -> Result<()> {
        let Some(cache) = &self.shared.backend.cache else {
            return Ok(());
        };
        if invalidation.is_empty() || !cache.options().durable_invalidation {
            return Ok(());
        }
        // Without the outbox table the write still commits: the invalidation
        // is applied after COMMIT, just not replayed if Redis misses it.
        let lookup = async {
            let mut connection = self.shared.lock_at(0).await?;
            self.shared.backend.outbox_present_on(&mut connection).await
        };
        let present = self
            .shared
            .within_deadline("the outbox table lookup (client-side deadline)", lookup)
            .await?;
        if !present {
            return Ok(());
        }
        for part in invalidation.chunks(crate::cache::ROWS_PER_MESSAGE) {
            let json = serde_json::to_value(&part).map_err(|e| {
                Error::invalid("cache", "invalidation", format!("does not serialize: {e}"))
            })?;
            self.shared
                .outbox
                .publish_json(0, INVALIDATION_TOPIC, json, DEFAULT_MAX_PAYLOAD)?;
        }
        Ok(())
    }

    /// Writes the recorded outbox messages in the transaction, just before
    /// COMMIT; nothing when none were recorded.
    async fn write_outbox(&self) -> Result<()> {
        let messages = self.shared.outbox.take();
        if messages.is_empty() {
            return Ok(());
        }
        let write = async {
            let mut connection = self.shared.lock_at(0).await?;
            crate::outbox::write_pending(&self.shared.backend, &mut connection, &messages).await
        };
        self.shared
            .within_deadline("the outbox write (client-side deadline)", write)
            .await
    }

    /// Records `job` in the transactional outbox: written with this unit's
    /// outermost COMMIT, dropped by a rollback (of this unit, or of a nested
    /// unit that recorded it), then moved to its queue by the outbox relay.
    /// Returns the job's id on the queue. A unit begun on a tenant's handle
    /// ([`PgBackend::for_tenant`]) writes its tenant on the outbox row, and
    /// the job carries it to the worker.
    ///
    /// The job is validated now (queue name, payload size, priority), so a
    /// bad job fails here rather than at commit.
    pub fn enqueue<J: Job>(&self, job: &J) -> Result<Uuid> {
        self.enqueue_starting(job, StartAt::Now)
    }

    /// [`enqueue`](Self::enqueue) with a start time, read on the queue
    /// server's clock when the relay delivers the job.
    pub fn enqueue_starting<J: Job>(&self, job: &J, start: StartAt) -> Result<Uuid> {
        self.check_open()?;
        let envelope = JobEnvelope::of(job, DEFAULT_MAX_PAYLOAD)?.starting(start);
        self.shared.outbox.push_envelope(self.level(), envelope)
    }

    /// Records `event` for its topic in the transactional outbox, as
    /// [`enqueue`](Self::enqueue) does for jobs.
    pub fn publish<E: Event>(&self, event: &E) -> Result<Uuid> {
        self.publish_on(E::TOPIC, event)
    }

    /// Records `payload` on `topic` (1 to 64 of `A-Z a-z 0-9 _ - .`) in the
    /// transactional outbox; for payloads without an [`Event`] type, such as
    /// a [`Projection`](reposmith_core::outbox::Projection).
    pub fn publish_on(&self, topic: &str, payload: &impl serde::Serialize) -> Result<Uuid> {
        self.check_open()?;
        let json = serde_json::to_value(payload).map_err(|e| {
            Error::invalid(
                "event",
                topic.to_owned(),
                format!("does not serialize: {e}"),
            )
        })?;
        crate::validate::check_json("event", topic, &json)?;
        let level = self.level();
        self.shared
            .outbox
            .publish_json(level, topic, json, DEFAULT_MAX_PAYLOAD)
    }

    /// The unit's connection for a statement of its own (the innermost open
    /// unit's). A failed statement must end the unit: the transaction is
    /// aborted.
    pub(crate) async fn connection(&self) -> Result<UnitConnection<'_>> {
        self.shared.lock_at(self.level()).await
    }

    /// The savepoint level messages recorded through this unit are tagged with.
    fn level(&self) -> usize {
        self.savepoint.unwrap_or(0)
    }

    /// Refuses to record messages in a unit that has ended, or in a nested
    /// unit whose savepoint is gone (its parent was rolled back or dropped
    /// first): a message recorded there would outlive its rollback.
    fn check_open(&self) -> Result<()> {
        let gone = match self.savepoint {
            Some(id) => !self.shared.live_list().contains(&id),
            None => false,
        };
        match self.finished || gone {
            true => Err(ended()),
            false => Ok(()),
        }
    }

    /// Undoes the unit's writes.
    pub async fn rollback(mut self) -> Result<()> {
        if let Some(id) = self.savepoint {
            let sp = savepoint(id);
            let sql = format!("ROLLBACK TO SAVEPOINT {sp}; RELEASE SAVEPOINT {sp}");
            let rolled_back = self.end_nested(id, sql).await;
            if rolled_back.is_ok() {
                // The transaction is usable again after a savepoint rollback.
                self.shared.poisoned.store(false, Ordering::Release);
                self.shared.outbox.roll_back_to(id);
                self.shared.invalidations.roll_back_to(id);
            }
            self.finished = true;
            return rolled_back;
        }
        let ended = self.end_transaction("ROLLBACK").await;
        self.finished = true;
        ended.map_err(|err| self.shared.backend.map_error(err))
    }

    /// Sends COMMIT or ROLLBACK on the taken connection; pools it again only
    /// when the server confirmed. A cancelled call drops the connection taken
    /// out of the unit, which closes it.
    async fn end_transaction(&self, sql: &'static str) -> std::result::Result<(), sqlx::Error> {
        let mut connection = self
            .shared
            .take()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        if sql == "ROLLBACK" && self.shared.cut.load(Ordering::Acquire) {
            // A ROLLBACK would queue behind the cut statement's reply, which
            // a stalled connection never sends: closing the connection ends
            // the transaction on the server without waiting.
            discard(connection);
            return Ok(());
        }
        let sent = sqlx::raw_sql(sql).execute(&mut *connection);
        let outcome = match client_deadline(&self.shared.backend) {
            Some(after) => tokio::time::timeout(after, sent)
                .await
                .unwrap_or_else(|_| Err(no_reply_within(after))),
            None => sent.await,
        };
        match outcome {
            Ok(_) => {
                connection.ready();
                Ok(())
            }
            Err(err) => {
                discard(connection);
                Err(err)
            }
        }
    }

    /// Releases or rolls back nested unit `id`, which must be the innermost open one.
    async fn end_nested(&self, id: usize, sql: String) -> Result<()> {
        let mut connection = self.shared.lock_at(id).await?;
        let result = self.shared.run(&mut connection, sql).await;
        match &result {
            Ok(()) => self.shared.live_list().retain(|&sp| sp != id),
            Err(_) => self.shared.poison(),
        }
        result
    }

    fn commit_error(&self, err: sqlx::Error) -> Error {
        commit_error(&self.shared.backend, err)
    }
}

impl Drop for PgUnitOfWork {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(id) = self.savepoint {
            if self.shared.live_list().contains(&id) {
                self.shared.abandoned_list().push(id);
            }
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
            .field("savepoint", &self.savepoint)
            .field("finished", &self.finished)
            .finish()
    }
}
