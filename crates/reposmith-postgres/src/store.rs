//! The core seams on PostgreSQL: [`DataStore`] for [`PgBackend`] and
//! [`UnitOfWork`] for [`PgUnitOfWork`], so code generic over them runs here.

use reposmith_core::home::{Postgres, StoredIn};
use reposmith_core::repository::BoxFuture;
use reposmith_core::{Backend, Capabilities, DataStore, Entity, Result, RetryPolicy, UnitOfWork};

use crate::{PgBackend, PgRepository, PgUnitOfWork};

/// What every PostgreSQL backend can do (pgvector and full text come from
/// the tables' DDL, which the migrations or `create_tables` create).
const CAPABILITIES: Capabilities = Capabilities::NONE
    .with_transactions(true)
    .with_nested_units(true)
    .with_isolation_levels(true)
    .with_vector_index(true)
    .with_full_text_search(true)
    .with_outbox(true);

impl DataStore for PgBackend {
    type Home = Postgres;
    type Repo<E: Entity> = PgRepository<E>;
    type Unit = PgUnitOfWork;

    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn repo<E: StoredIn<Postgres>>(&self) -> PgRepository<E> {
        self.repo_of()
    }

    async fn begin(&self) -> Result<PgUnitOfWork> {
        PgBackend::begin(self).await
    }

    async fn transaction<T, F>(&self, policy: RetryPolicy, work: F) -> Result<T>
    where
        T: Send,
        F: for<'u> FnMut(&'u PgUnitOfWork) -> BoxFuture<'u, Result<T>> + Send,
    {
        PgBackend::transaction(self, policy, work).await
    }
}

impl UnitOfWork for PgUnitOfWork {
    type Home = Postgres;
    type Repo<E: Entity> = PgRepository<E>;

    fn repo<E: StoredIn<Postgres>>(&self) -> PgRepository<E> {
        self.repo_of()
    }

    async fn commit(self) -> Result<()> {
        PgUnitOfWork::commit(self).await
    }

    async fn rollback(self) -> Result<()> {
        PgUnitOfWork::rollback(self).await
    }

    async fn nested(&self) -> Result<PgUnitOfWork> {
        PgUnitOfWork::nested(self).await
    }

    fn enqueue<J: reposmith_core::job::Job>(&self, job: &J) -> Result<uuid::Uuid> {
        PgUnitOfWork::enqueue(self, job)
    }

    fn publish<E: reposmith_core::outbox::Event>(&self, event: &E) -> Result<uuid::Uuid> {
        PgUnitOfWork::publish(self, event)
    }
}
