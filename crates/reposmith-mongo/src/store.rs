//! The core seams on MongoDB: [`DataStore`] for [`MongoBackend`] and
//! [`UnitOfWork`] for [`MongoUnitOfWork`], so code generic over them runs here.

use reposmith_core::home::{Mongo, StoredIn};
use reposmith_core::repository::BoxFuture;
use reposmith_core::{
    Backend, Capabilities, DataStore, Entity, Error, Result, RetryPolicy, UnitOfWork,
};

use crate::{MongoBackend, MongoRepository, MongoUnitOfWork};

impl DataStore for MongoBackend {
    type Home = Mongo;
    type Repo<E: Entity> = MongoRepository<E>;
    type Unit = MongoUnitOfWork;

    fn backend(&self) -> Backend {
        Backend::Mongo
    }

    /// Transactions need a replica set or a sharded cluster, and an
    /// approximate vector index needs a search process (`$vectorSearch`);
    /// both were probed at connect. MongoDB has no savepoints, no isolation
    /// levels (a transaction is snapshot-isolated) and no full-text search
    /// reposmith uses.
    fn capabilities(&self) -> Capabilities {
        let server = MongoBackend::capabilities(self);
        Capabilities::NONE
            .with_transactions(server.transactions)
            .with_vector_index(server.vector_search)
    }

    fn repo<E: StoredIn<Mongo>>(&self) -> MongoRepository<E> {
        self.repo_of()
    }

    async fn begin(&self) -> Result<MongoUnitOfWork> {
        MongoBackend::begin(self).await
    }

    async fn transaction<T, F>(&self, policy: RetryPolicy, work: F) -> Result<T>
    where
        T: Send,
        F: for<'u> FnMut(&'u MongoUnitOfWork) -> BoxFuture<'u, Result<T>> + Send,
    {
        MongoBackend::transaction(self, policy, work).await
    }
}

impl UnitOfWork for MongoUnitOfWork {
    type Home = Mongo;
    type Repo<E: Entity> = MongoRepository<E>;

    fn repo<E: StoredIn<Mongo>>(&self) -> MongoRepository<E> {
        self.repo_of()
    }

    async fn commit(self) -> Result<()> {
        MongoUnitOfWork::commit(self).await
    }

    async fn rollback(self) -> Result<()> {
        MongoUnitOfWork::rollback(self).await
    }

    /// MongoDB has no savepoints: always [`Error::Unavailable`].
    async fn nested(&self) -> Result<MongoUnitOfWork> {
        Err(Error::Unavailable {
            backend: Backend::Mongo,
            reason: "MongoDB has no savepoints, so a unit of work cannot nest \
                     (Capabilities::nested_units is false); run the work in the unit itself"
                .to_owned(),
        })
    }

    /// The outbox is a PostgreSQL table: always [`Error::Unavailable`].
    fn enqueue<J: reposmith_core::job::Job>(&self, _job: &J) -> Result<uuid::Uuid> {
        Err(reposmith_core::unit::no_outbox(Backend::Mongo))
    }

    /// The outbox is a PostgreSQL table: always [`Error::Unavailable`].
    fn publish<E: reposmith_core::outbox::Event>(&self, _event: &E) -> Result<uuid::Uuid> {
        Err(reposmith_core::unit::no_outbox(Backend::Mongo))
    }
}
