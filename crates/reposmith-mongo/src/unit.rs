//! [`MongoUnitOfWork`]: one multi-document transaction on one
//! [`ClientSession`], shared by every repository taken from it.
//!
//! # Transaction settings
//!
//! Read concern `snapshot` (every read sees one point in time, plus the
//! unit's own writes) and write concern `majority` with the client's
//! `wtimeout`, so a committed unit survives a failover and the wait for it
//! is bounded. A transaction lives at most `transactionLifetimeLimitSeconds`
//! on the server (60 s by default on MongoDB); keep units short.
//!
//! # How a unit ends
//!
//! - `commit` sends `commitTransaction`. When the reply is lost or the
//!   server cannot say (error label `UnknownTransactionCommitResult`), it
//!   sends it again, as the driver allows, up to [`COMMIT_ATTEMPTS`] times
//!   in all; if the outcome is still unknown it reports
//!   [`Error::CommitOutcomeUnknown`]. So is a `NoSuchTransaction` answer to
//!   a commit: the driver resends a commit after a network error by
//!   itself, and a server that restarted meanwhile may have applied the
//!   first one and forgotten the transaction (SecantusDB keeps its
//!   transaction table in memory). MongoDB persists it, so there the same
//!   answer usually means the server aborted the transaction (past
//!   `transactionLifetimeLimitSeconds`, or a failover before the commit):
//!   nothing was written, yet it is reported as unknown too, since the
//!   client cannot tell the two servers' cases apart. A transient abort
//!   (`TransientTransactionError`, e.g. a write conflict) is
//!   [`Error::Retryable`]: nothing was written, the whole unit may run again
//!   (see [`MongoBackend::transaction`]).
//!   A commit cancelled mid-flight, or past its deadline (reported as
//!   [`Error::CommitOutcomeUnknown`]), is resent in the background so the
//!   transaction does not stay open holding its documents.
//! - `rollback` sends `abortTransaction`. An abort cancelled mid-flight
//!   cannot be resent (the driver allows one abort per transaction); the
//!   server's lifetime limit ends that transaction.
//! - Dropping the unit aborts: the abort is spawned on the current tokio
//!   runtime, bounded by the operation deadline. Without a runtime the
//!   driver's own session drop hands the abort to its background task, and
//!   if that is gone too the server aborts the transaction when its lifetime
//!   limit expires (SecantusDB, the test server, reaps an expired
//!   transaction only when some transaction command next arrives; until
//!   then its documents stay locked and plain writes to them wait). Nothing
//!   a dropped unit wrote is ever visible.
//!
//! # Poisoning
//!
//! The driver's rule is that an operation future of a transaction must not
//! be dropped before it completes: the command may or may not have run, and
//! the session's state is unknown. Such a drop (a cancelled task, a
//! `select!`, reposmith's own operation deadline) *poisons* the unit, and
//! so does a failed command, because MongoDB aborts a transaction when one
//! of its commands fails. A poisoned unit refuses further operations and
//! `commit` (it aborts instead and reports why), so a half-applied unit is
//! never committed. When the poisoning failure was transient the refusal is
//! [`Error::Retryable`], so `transaction` still runs the unit again.
//!
//! # The repository cache
//!
//! Writes of cached entities record their invalidations in the unit
//! ([`PendingInvalidations`], all at level 0: MongoDB units do not nest).
//! `commit` applies them after `commitTransaction` succeeded or its outcome
//! stayed unknown (and after any other commit error except a transient
//! abort, which is known not to have committed: a needless invalidation
//! costs a refill, a missed one serves a stale row), before it returns. A
//! commit resent in the background (cancelled or past its deadline)
//! applies them again once the resend is answered, so a reader that
//! refilled an entry from before the commit meanwhile is corrected. A
//! poisoned unit, `rollback` and a dropped unit discard them. See the
//! `cache` module.
//!
//! Identity ids (integer ids from the `reposmith_counters` collection) are
//! reserved outside the transaction, like a Postgres sequence: concurrent
//! units never conflict on the counter, and an aborted unit leaves a gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use mongodb::ClientSession;
use mongodb::options::ReadConcern;
use reposmith_core::cache::{Invalidation, PendingInvalidations};
use reposmith_core::{Backend, Entity, Error, MongoEntity, Result};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::config::majority_write_concern;
use crate::error::{commit_unknown, is_transient};
use crate::{MongoBackend, MongoRepository};

/// Most times one commit asks the driver to commit, the first included (the
/// driver itself resends once after a network error, so up to twice as
/// many `commitTransaction` commands may reach the wire).
pub const COMMIT_ATTEMPTS: u32 = 3;

/// Pause before resending a commit whose outcome was unknown.
const COMMIT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why a unit can no longer commit; [`HEALTHY`] while it can.
const HEALTHY: u8 = 0;
/// A command failed: the server aborted the transaction.
const FAILED: u8 = 1;
/// A command failed with `TransientTransactionError`.
const TRANSIENT: u8 = 2;
/// A command was dropped before it completed.
const DROPPED: u8 = 3;

/// State shared by a unit and its repositories.
pub(crate) struct UnitShared {
    backend: MongoBackend,
    /// `None` once the unit has ended.
    session: Mutex<Option<ClientSession>>,
    /// The first reason the unit was poisoned, or [`HEALTHY`].
    poison: AtomicU8,
    /// Cache invalidations of the unit's writes, applied after its commit.
    pending: PendingInvalidations,
}

/// The unit's session, locked for one command; poisons the unit when
/// dropped before the command settled.
pub(crate) struct Held<'u> {
    session: MappedMutexGuard<'u, ClientSession>,
    shared: &'u UnitShared,
    settled: bool,
}

impl Held<'_> {
    /// The session to attach to the command.
    pub(crate) fn session(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Records how the command ended: a server or driver error aborted the
    /// transaction; a missed deadline (the outer `Err`) dropped the command
    /// mid-flight, which `Drop` records.
    pub(crate) fn settle<T>(&mut self, outcome: &Result<mongodb::error::Result<T>>) {
        match outcome {
            Ok(Ok(_)) => self.settled = true,
            Ok(Err(error)) => {
                self.settled = true;
                self.shared.poison(if is_transient(error) {
                    TRANSIENT
                } else {
                    FAILED
                });
            }
            Err(_) => {}
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.poison(DROPPED);
        }
    }
}

impl UnitShared {
    pub(crate) fn backend(&self) -> &MongoBackend {
        &self.backend
    }

    /// The cache invalidations recorded by the unit's writes.
    pub(crate) fn pending(&self) -> &PendingInvalidations {
        &self.pending
    }

    /// The session for one command, unless the unit ended or is poisoned.
    pub(crate) async fn hold(&self) -> Result<Held<'_>> {
        let guard = self.session.lock().await;
        let session = MutexGuard::try_map(guard, Option::as_mut).map_err(|_| ended())?;
        self.check()?;
        Ok(Held {
            session,
            shared: self,
            settled: false,
        })
    }

    fn poison(&self, why: u8) {
        // The first reason wins: later failures follow from it.
        let _ = (self.poison).compare_exchange(HEALTHY, why, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The poisoned-unit error, if the unit is poisoned.
    fn check(&self) -> Result<()> {
        match self.poison.load(Ordering::Acquire) {
            HEALTHY => Ok(()),
            why => Err(poisoned(why)),
        }
    }

    /// Takes the session out; the unit is over for every repository.
    async fn take(&self) -> Result<ClientSession> {
        self.session.lock().await.take().ok_or_else(ended)
    }
}

impl Drop for UnitShared {
    fn drop(&mut self) {
        if let Some(session) = self.session.get_mut().take() {
            abort_detached(&self.backend, session);
        }
    }
}

/// Aborts `session`'s transaction without waiting for it (see the module docs).
fn abort_detached(backend: &MongoBackend, mut session: ClientSession) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        // Dropping the session hands the abort to the driver's background task.
        return;
    };
    let after = backend.operation_timeout();
    runtime.spawn(async move {
        tracing::debug!("aborting the transaction of a dropped unit of work");
        let _ = tokio::time::timeout(after, session.abort_transaction()).await;
    });
}

fn ended() -> Error {
    Error::Unavailable {
        backend: Backend::Mongo,
        reason: "the unit of work has ended".to_owned(),
    }
}

fn poisoned(why: u8) -> Error {
    let backend = Backend::Mongo;
    let cause = match why {
        TRANSIENT => {
            return Error::Retryable {
                backend,
                code: "TransientTransactionError".to_owned(),
                reason: "an earlier operation of the unit of work failed with a transient \
                         error and the server aborted the transaction"
                    .to_owned(),
            };
        }
        DROPPED => {
            "one of its operations was dropped (cancelled or past its deadline) before it \
             completed, which leaves a MongoDB transaction in an unknown state"
        }
        _ => "one of its operations failed, which aborts a MongoDB transaction",
    };
    Error::Backend {
        backend,
        code: None,
        reason: format!("the unit of work was aborted and cannot commit: {cause}"),
    }
}

fn no_transactions(backend: &MongoBackend) -> Error {
    Error::Unavailable {
        backend: Backend::Mongo,
        reason: format!(
            "{} has no multi-document transactions (MongoDB needs a replica set or a \
             sharded cluster for them)",
            backend.target()
        ),
    }
}

/// A MongoDB transaction: every repository from [`MongoUnitOfWork::repo`]
/// runs its commands in it. Dropping the unit without `commit` aborts it.
pub struct MongoUnitOfWork {
    shared: Arc<UnitShared>,
    finished: bool,
}

impl MongoBackend {
    /// Starts a unit of work: a client session with a transaction at read
    /// concern `snapshot` and write concern `majority`.
    ///
    /// Fails with [`Error::Unavailable`] on a deployment without
    /// transactions (a standalone server).
    pub async fn begin(&self) -> Result<MongoUnitOfWork> {
        self.begin_with(Some(ReadConcern::snapshot())).await
    }

    /// [`begin`](Self::begin) with the given read concern (`None`: the
    /// server's default). A transaction that only writes reads nothing, and
    /// a snapshot makes SecantusDB fail more commits as conflicting with
    /// unrelated concurrent transactions.
    pub(crate) async fn begin_with(
        &self,
        read_concern: Option<ReadConcern>,
    ) -> Result<MongoUnitOfWork> {
        if !self.capabilities().transactions {
            return Err(no_transactions(self));
        }
        let started = self.bounded("startSession", self.client().start_session());
        let mut session = started.await?.map_err(|e| self.map_error(e))?;
        let transaction = session
            .start_transaction()
            .write_concern(majority_write_concern());
        let transaction = match read_concern {
            Some(concern) => transaction.read_concern(concern),
            None => transaction,
        };
        let begun = self.bounded("startTransaction", transaction).await?;
        begun.map_err(|e| self.map_error(e))?;
        Ok(MongoUnitOfWork {
            shared: Arc::new(UnitShared {
                backend: self.clone(),
                session: Mutex::new(Some(session)),
                poison: AtomicU8::new(HEALTHY),
                pending: PendingInvalidations::new(),
            }),
            finished: false,
        })
    }
}

impl MongoUnitOfWork {
    /// The repository of `E` on this unit's transaction.
    pub fn repo<E: MongoEntity>(&self) -> MongoRepository<E> {
        self.repo_of()
    }

    /// [`repo`](Self::repo) for code already holding a repository of `E`,
    /// which proves MongoDB stores it.
    pub(crate) fn repo_of<E: Entity>(&self) -> MongoRepository<E> {
        MongoRepository::on_unit(Arc::clone(&self.shared))
    }

    /// Makes the unit's writes durable and visible.
    ///
    /// A poisoned unit is aborted instead and the reason reported. An
    /// unknown outcome is resent up to [`COMMIT_ATTEMPTS`] times in all,
    /// then reported as [`Error::CommitOutcomeUnknown`]; a transient abort
    /// is [`Error::Retryable`].
    ///
    /// The cache invalidations of the unit's writes are applied after the
    /// commit, before this returns (see the module docs).
    pub async fn commit(mut self) -> Result<()> {
        let session = self.shared.take().await?;
        self.finished = true;
        let pending = self.shared.pending.take();
        if let Err(error) = self.shared.check() {
            abort(&self.shared.backend, session).await;
            return Err(error);
        }
        let backend = &self.shared.backend;
        let outcome = commit_session(backend, session, &pending).await;
        let committed = !matches!(outcome, Err(Error::Retryable { .. }));
        if committed && let Some(cache) = backend.cache() {
            cache.arm(pending).apply().await;
        }
        outcome
    }

    /// Discards the unit's writes (and the cache invalidations they recorded).
    pub async fn rollback(mut self) -> Result<()> {
        let mut session = self.shared.take().await?;
        self.finished = true;
        drop(self.shared.pending.take());
        let backend = &self.shared.backend;
        let aborted = backend.bounded("abortTransaction", session.abort_transaction());
        aborted.await?.map_err(|e| backend.map_error(e))
    }
}

/// Sends `abortTransaction` and ignores its outcome: the caller's error is
/// what matters, and an unanswered abort only leaves the transaction to the
/// server's lifetime limit.
async fn abort(backend: &MongoBackend, mut session: ClientSession) {
    let _ = backend
        .bounded("abortTransaction", session.abort_transaction())
        .await;
}

/// Commits; see [`Unsettled`] for a commit that is cancelled or times out
/// (`pending` is what it invalidates after the resend).
async fn commit_session(
    backend: &MongoBackend,
    session: ClientSession,
    pending: &Invalidation,
) -> Result<()> {
    let mut unsettled = Unsettled {
        backend: backend.clone(),
        session: None,
        pending: pending.clone(),
    };
    let session = unsettled.session.insert(session);
    match commit_attempts(backend, session).await {
        Err(Error::Timeout { after, .. }) => Err(Error::CommitOutcomeUnknown {
            backend: Backend::Mongo,
            reason: format!("no reply to commitTransaction within {after:?}"),
        }),
        answered => {
            unsettled.session = None;
            answered
        }
    }
}

/// Sends `commitTransaction`, resending it while its outcome is unknown.
async fn commit_attempts(backend: &MongoBackend, session: &mut ClientSession) -> Result<()> {
    let mut attempt = 1;
    loop {
        let sent = backend.bounded("commitTransaction", session.commit_transaction());
        match sent.await? {
            Ok(()) => return Ok(()),
            Err(error) if commit_unknown(&error) && attempt < COMMIT_ATTEMPTS => {
                tracing::debug!(%error, attempt, "commit outcome unknown, sending it again");
                tokio::time::sleep(COMMIT_RETRY_PAUSE * attempt).await;
                attempt += 1;
            }
            Err(error) if no_such_transaction(&error) => {
                // The driver resends a commit by itself after a network
                // error; a server that lost its transaction table in a
                // crash (SecantusDB keeps it in memory) then answers
                // NoSuchTransaction for a transaction whose first commit
                // was applied. Measured: units so reported were stored
                // after `kill -9`. Retryable would invite running the unit
                // a second time, so it is unknown.
                let reason = match backend.map_error(error) {
                    // The driver's message, without the mapped advice to retry.
                    Error::Retryable { reason, .. } | Error::Backend { reason, .. } => reason,
                    other => other.to_string(),
                };
                return Err(Error::CommitOutcomeUnknown {
                    backend: Backend::Mongo,
                    reason: format!(
                        "the server does not know the transaction any more (it may have \
                         committed before the server restarted): {reason}"
                    ),
                });
            }
            Err(error) => return Err(backend.map_error(error)),
        }
    }
}

/// MongoDB's `NoSuchTransaction` code.
const NO_SUCH_TRANSACTION: i32 = 251;

/// Whether `error` is the server saying it has no such transaction.
fn no_such_transaction(error: &mongodb::error::Error) -> bool {
    matches!(&*error.kind, mongodb::error::ErrorKind::Command(command)
        if command.code == NO_SUCH_TRANSACTION)
}

/// A session whose commit was started but got no answer: the commit future
/// was dropped (a cancelled task) or missed its deadline. Its transaction
/// may still be open on the server, holding its documents, and the driver
/// allows no abort after a commit, so dropping this resends the commit on
/// the runtime, bounded by the deadline: the transaction ends as the caller
/// asked, instead of when the server's lifetime limit reaps it. The unit's
/// cache invalidations are applied again after the resend is answered: a
/// reader may have refilled an entry from before the commit landed.
struct Unsettled {
    backend: MongoBackend,
    session: Option<ClientSession>,
    pending: Invalidation,
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        let Some(mut session) = self.session.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let after = self.backend.operation_timeout();
        let cache = self.backend.cache().cloned();
        let pending = std::mem::take(&mut self.pending);
        runtime.spawn(async move {
            tracing::debug!("resending a commit that got no answer");
            let _ = tokio::time::timeout(after, session.commit_transaction()).await;
            if let Some(cache) = cache {
                cache.invalidate(&pending).await;
            }
        });
    }
}

impl Drop for MongoUnitOfWork {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // An operation holding the session right now (a repository used from
        // another task) keeps it until the last handle drops; `UnitShared`'s
        // Drop aborts then.
        if let Ok(mut guard) = self.shared.session.try_lock()
            && let Some(session) = guard.take()
        {
            abort_detached(&self.shared.backend, session);
        }
    }
}

impl std::fmt::Debug for MongoUnitOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoUnitOfWork")
            .field("finished", &self.finished)
            .field("poisoned", &self.shared.check().is_err())
            .finish()
    }
}
