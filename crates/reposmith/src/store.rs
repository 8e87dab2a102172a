//! [`Store`]: every configured backend, connected, behind one handle.

use std::fmt;

use reposmith_core::{Backend, Error, Result};

#[cfg(feature = "mongo")]
use crate::MongoBackend;
#[cfg(feature = "postgres")]
use crate::PgBackend;
#[cfg(feature = "redis")]
use crate::RedisBackend;
use crate::{Config, Health};

/// The application's connections: pools and clients for each configured backend.
///
/// Cheap to clone; clones share the pools. Repositories come from here.
#[derive(Clone)]
pub struct Store {
    #[cfg(feature = "postgres")]
    postgres: Option<PgBackend>,
    #[cfg(feature = "mongo")]
    mongo: Option<MongoBackend>,
    #[cfg(feature = "redis")]
    redis: Option<RedisBackend>,
}

impl Store {
    /// Connects every backend in `config` at once, failing with the first
    /// backend's error (connect, authentication, timeout) if any fails.
    ///
    /// Each backend proves it is reachable before this returns: a wrong host,
    /// a closed port or a rejected password is reported here, naming the
    /// backend and host but never the password.
    pub async fn connect(config: Config) -> Result<Self> {
        if config.is_empty() {
            return Err(Error::config("store", "no backend configured"));
        }
        let (postgres, mongo, redis) = tokio::join!(
            connect_postgres(&config),
            connect_mongo(&config),
            connect_redis(&config)
        );
        let (_postgres, _mongo, _redis) = (postgres?, mongo?, redis?);
        Ok(Store {
            #[cfg(feature = "postgres")]
            postgres: _postgres,
            #[cfg(feature = "mongo")]
            mongo: _mongo,
            #[cfg(feature = "redis")]
            redis: _redis,
        })
    }

    /// The PostgreSQL backend, or [`Error::Unavailable`] when not configured.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(&self) -> Result<&PgBackend> {
        self.postgres
            .as_ref()
            .ok_or_else(|| not_configured(Backend::Postgres, "DATABASE_URL"))
    }

    /// The PostgreSQL repository of `E` on the pool; [`Error::Unavailable`]
    /// when Postgres is not configured.
    ///
    /// ```no_run
    /// # use reposmith::prelude::*;
    /// # #[derive(Repository)] struct Document { #[repo(id)] id: uuid::Uuid }
    /// # async fn run(store: Store) -> reposmith::Result<()> {
    /// let docs = store.repo::<Document>()?;
    /// let total = docs.count(Filter::all()).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn repo<E: reposmith_core::PostgresEntity>(&self) -> Result<crate::PgRepository<E>> {
        Ok(self.postgres()?.repo::<E>())
    }

    /// Starts a PostgreSQL unit of work (one transaction) at READ COMMITTED:
    /// `uow.repo::<E>()` gives any entity's repository on it, `commit()` ends
    /// it, and dropping it uncommitted rolls back.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn begin(&self) -> Result<crate::PgUnitOfWork> {
        self.postgres()?.begin().await
    }

    /// Runs `work` in a PostgreSQL unit of work and commits it, running it
    /// again (bounded, with jittered backoff) when the server aborts it as a
    /// serialization failure or deadlock. See [`PgBackend::transaction`](crate::PgBackend::transaction).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn transaction<T, F>(&self, policy: crate::RetryPolicy, work: F) -> Result<T>
    where
        F: for<'u> FnMut(&'u crate::PgUnitOfWork) -> crate::UnitFuture<'u, T>,
    {
        self.postgres()?.transaction(policy, work).await
    }

    /// The MongoDB backend, or [`Error::Unavailable`] when not configured.
    #[cfg(feature = "mongo")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
    pub fn mongo(&self) -> Result<&MongoBackend> {
        self.mongo
            .as_ref()
            .ok_or_else(|| not_configured(Backend::Mongo, "MONGODB_URL"))
    }

    /// The MongoDB repository of `E` (on its collection); [`Error::Unavailable`]
    /// when MongoDB is not configured. `E` must be stored in MongoDB: an
    /// entity declared `#[repo(backend = "postgres")]` does not compile here.
    ///
    /// ```no_run
    /// # use reposmith::prelude::*;
    /// # #[derive(Repository)]
    /// # #[repo(backend = "mongo", collection = "llm_traces")]
    /// # struct Trace { #[repo(id)] id: reposmith::ObjectId }
    /// # async fn run(store: Store) -> reposmith::Result<()> {
    /// let traces = store.mongo_repo::<Trace>()?;
    /// let total = traces.count(Filter::all()).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "mongo")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
    pub fn mongo_repo<E: reposmith_core::MongoEntity>(&self) -> Result<crate::MongoRepository<E>> {
        Ok(self.mongo()?.repo::<E>())
    }

    /// Starts a MongoDB unit of work (a transaction on a client session);
    /// see [`MongoBackend::begin`](crate::MongoBackend::begin).
    #[cfg(feature = "mongo")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
    pub async fn mongo_begin(&self) -> Result<crate::MongoUnitOfWork> {
        self.mongo()?.begin().await
    }

    /// Runs `work` in a MongoDB unit of work and commits it, running it again
    /// (bounded, with backoff) when the server aborts it as transient. See
    /// [`MongoBackend::transaction`](crate::MongoBackend::transaction).
    #[cfg(feature = "mongo")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
    pub async fn mongo_transaction<T, F>(
        &self,
        policy: crate::MongoRetryPolicy,
        work: F,
    ) -> Result<T>
    where
        F: for<'u> FnMut(
            &'u crate::MongoUnitOfWork,
        ) -> reposmith_core::repository::BoxFuture<'u, Result<T>>,
    {
        self.mongo()?.transaction(policy, work).await
    }

    /// The Redis backend, or [`Error::Unavailable`] when not configured.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(&self) -> Result<&RedisBackend> {
        self.redis
            .as_ref()
            .ok_or_else(|| not_configured(Backend::Redis, "REDIS_URL"))
    }

    /// Probes every configured backend at once and reports each one's health
    /// and versions. Never fails as a whole: a down backend is an `Err` entry.
    pub async fn ping(&self) -> Health {
        let (postgres, mongo, redis) = tokio::join!(
            async {
                #[cfg(feature = "postgres")]
                if let Some(pg) = &self.postgres {
                    return Some(pg.ping().await);
                }
                None
            },
            async {
                #[cfg(feature = "mongo")]
                if let Some(mongo) = &self.mongo {
                    return Some(mongo.ping().await);
                }
                None
            },
            async {
                #[cfg(feature = "redis")]
                if let Some(redis) = &self.redis {
                    return Some(redis.ping().await);
                }
                None
            }
        );
        Health::new(postgres, mongo, redis)
    }

    /// Closes the Postgres pool and the Mongo client; Redis closes when the last clone drops.
    pub async fn close(&self) {
        #[cfg(feature = "postgres")]
        if let Some(pg) = &self.postgres {
            pg.close().await;
        }
        #[cfg(feature = "mongo")]
        if let Some(mongo) = &self.mongo {
            mongo.close().await;
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Store");
        #[cfg(feature = "postgres")]
        debug.field("postgres", &self.postgres);
        #[cfg(feature = "mongo")]
        debug.field("mongo", &self.mongo);
        #[cfg(feature = "redis")]
        debug.field("redis", &self.redis);
        debug.finish()
    }
}

#[allow(dead_code, reason = "unused when every backend feature is off")]
fn not_configured(backend: Backend, variable: &str) -> Error {
    Error::Unavailable {
        backend,
        reason: format!("not configured in this store (set {variable} or add it to the Config)"),
    }
}

#[cfg(feature = "postgres")]
async fn connect_postgres(config: &Config) -> Result<Option<PgBackend>> {
    match &config.postgres {
        Some(pg) => Ok(Some(PgBackend::connect(pg).await?)),
        None => Ok(None),
    }
}

#[cfg(not(feature = "postgres"))]
async fn connect_postgres(_: &Config) -> Result<()> {
    Ok(())
}

#[cfg(feature = "mongo")]
async fn connect_mongo(config: &Config) -> Result<Option<MongoBackend>> {
    match &config.mongo {
        Some(mongo) => Ok(Some(MongoBackend::connect(mongo).await?)),
        None => Ok(None),
    }
}

#[cfg(not(feature = "mongo"))]
async fn connect_mongo(_: &Config) -> Result<()> {
    Ok(())
}

#[cfg(feature = "redis")]
async fn connect_redis(config: &Config) -> Result<Option<RedisBackend>> {
    match &config.redis {
        Some(redis) => Ok(Some(RedisBackend::connect(redis).await?)),
        None => Ok(None),
    }
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(_: &Config) -> Result<()> {
    Ok(())
}
