//! The backend-neutral seams a service is written against: [`UnitOfWork`]
//! (one transaction, its repositories, commit and rollback) and
//! [`DataStore`] (a connected backend: repositories, units, retried units).
//!
//! The PostgreSQL and MongoDB backends implement both, so a function bound
//! by them compiles unchanged whichever backend stores its entities:
//!
//! ```
//! use reposmith_core::{Entity, Filter, Repository, Result, StoredIn, UnitOfWork};
//!
//! /// Deletes every row matching `filter` and the given entity, in one unit.
//! async fn purge<U, E>(unit: U, filter: Filter<E>) -> Result<u64>
//! where
//!     U: UnitOfWork,
//!     E: StoredIn<U::Home>,
//! {
//!     let removed = unit.repo::<E>().delete_where(filter).await?;
//!     unit.commit().await?;
//!     Ok(removed)
//! }
//! ```

use std::future::Future;

use crate::capability::Capabilities;
use crate::entity::Entity;
use crate::home::StoredIn;
use crate::job::Job;
use crate::outbox::Event;
use crate::repository::{BoxFuture, Repository};
use crate::retry::RetryPolicy;
use crate::search::VectorSearch;
use crate::{Backend, Result};

/// One transaction, shared by every repository taken from it.
///
/// Dropping a unit without `commit` rolls it back. Each backend documents
/// what a unit guarantees there (isolation, read concern, limits).
pub trait UnitOfWork: Send + Sync + Sized + std::fmt::Debug {
    /// The backend, as a type: [`home::Postgres`](crate::home::Postgres) or
    /// [`home::Mongo`](crate::home::Mongo).
    type Home: 'static;

    /// The repository type of this backend (cheap to clone; a clone shares
    /// the unit).
    type Repo<E: Entity>: Repository<E> + VectorSearch<E> + Clone + std::fmt::Debug + 'static;

    /// The repository of `E` on this unit's transaction.
    fn repo<E: StoredIn<Self::Home>>(&self) -> Self::Repo<E>;

    /// Makes the unit's writes durable (or, for a nested unit, part of its
    /// parent). A reply that never came is
    /// [`Error::CommitOutcomeUnknown`](crate::Error::CommitOutcomeUnknown);
    /// a transient abort is [`Error::Retryable`](crate::Error::Retryable).
    fn commit(self) -> impl Future<Output = Result<()>> + Send;

    /// Undoes the unit's writes.
    fn rollback(self) -> impl Future<Output = Result<()>> + Send;

    /// A unit inside this one that commits into it or rolls back alone (a
    /// savepoint). Where the backend has none
    /// ([`Capabilities::nested_units`] is false) this is
    /// [`Error::Unavailable`](crate::Error::Unavailable).
    fn nested(&self) -> impl Future<Output = Result<Self>> + Send;

    /// Records `job` for its queue in this unit's transactional outbox: it
    /// is written with the unit's COMMIT (so it exists exactly when the
    /// unit's writes do), dropped with a rollback (a nested unit's rollback
    /// drops only its own), and moved to the queue by the outbox relay.
    /// Returns the job's id, which is also its id on the queue.
    ///
    /// Where the backend keeps no outbox ([`Capabilities::outbox`] is false)
    /// this is [`Error::Unavailable`](crate::Error::Unavailable).
    fn enqueue<J: Job>(&self, job: &J) -> Result<uuid::Uuid>;

    /// Records `event` for its topic in this unit's transactional outbox,
    /// as [`enqueue`](Self::enqueue) does for jobs.
    fn publish<E: Event>(&self, event: &E) -> Result<uuid::Uuid>;
}

/// The error of [`UnitOfWork::enqueue`] and [`UnitOfWork::publish`] on a
/// backend without an outbox.
pub fn no_outbox(backend: Backend) -> crate::Error {
    crate::Error::Unavailable {
        backend,
        reason: "this backend keeps no transactional outbox: record jobs and events in a \
                 PostgreSQL unit of work"
            .to_owned(),
    }
}

/// A connected backend that stores entities: repositories on its pool,
/// units of work, and units run again when the server aborts them as
/// retryable.
pub trait DataStore: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// The backend, as a type: [`home::Postgres`](crate::home::Postgres) or
    /// [`home::Mongo`](crate::home::Mongo).
    type Home: 'static;

    /// The repository type of this backend (cheap to clone; clones share
    /// the pool).
    type Repo<E: Entity>: Repository<E> + VectorSearch<E> + Clone + std::fmt::Debug + 'static;

    /// The unit of work type of this backend.
    type Unit: UnitOfWork<Home = Self::Home> + 'static;

    /// Which backend this is, for messages and metrics.
    fn backend(&self) -> Backend;

    /// What this backend (and the server behind it) can do.
    fn capabilities(&self) -> Capabilities;

    /// The repository of `E` on the pool (each call its own statement).
    fn repo<E: StoredIn<Self::Home>>(&self) -> Self::Repo<E>;

    /// Starts a unit of work with the backend's default settings, which
    /// differ: PostgreSQL begins at READ COMMITTED (each statement sees what
    /// was committed before it, so a read-decide-write unit can act on a
    /// stale read), MongoDB with read concern `snapshot` (a conflicting
    /// concurrent write aborts the unit as retryable). Code that reads,
    /// decides and writes uses [`transaction`](Self::transaction), which
    /// runs PostgreSQL units at SERIALIZABLE by default and retries both.
    fn begin(&self) -> impl Future<Output = Result<Self::Unit>> + Send;

    /// Runs `work` in a unit of work and commits it; when the server aborts
    /// the unit as retryable, in a statement or at commit, runs `work` again
    /// in a new unit as `policy` allows. An error from `work` rolls back.
    ///
    /// `work` may run several times, so it must not have effects outside the
    /// unit it is given. It must be `Send` (the retried future may move
    /// between threads); for a closure that is not, call the backend's own
    /// `transaction` (e.g. `PgBackend::transaction`), which does not ask it.
    fn transaction<T, F>(
        &self,
        policy: RetryPolicy,
        work: F,
    ) -> impl Future<Output = Result<T>> + Send
    where
        T: Send,
        F: for<'u> FnMut(&'u Self::Unit) -> BoxFuture<'u, Result<T>> + Send;
}
