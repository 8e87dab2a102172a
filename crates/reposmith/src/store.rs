//! [`Store`]: every configured backend, connected, behind one handle.

use std::fmt;

use reposmith_core::repository::BoxFuture;
use reposmith_core::{
    Backend, DataStore, Error, IntoTenant, Pinned, Result, RetryPolicy, RowScope, StoredIn, Tenant,
};

#[cfg(feature = "mongo")]
use crate::MongoBackend;
#[cfg(feature = "postgres")]
use crate::PgBackend;
#[cfg(feature = "redis")]
use crate::RedisBackend;
use crate::home::{HandleOf, HomeBackend, RepoOf, UnitOf};
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
    /// The repository cache, when Redis is configured and the cache is on.
    #[cfg(feature = "redis")]
    cache: Option<reposmith_core::cache::Cache>,
    /// The outbox relay replaying cache invalidations (PostgreSQL with
    /// durable invalidation), stopped by [`Store::close`].
    #[cfg(all(feature = "redis", feature = "postgres"))]
    replay: std::sync::Arc<std::sync::Mutex<Option<ReplayTask>>>,
    /// The tenant of this handle ([`Store::for_tenant`]).
    tenant: Option<Tenant>,
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
        #[allow(unused_mut, reason = "only the cache changes them")]
        let mut store = Store {
            #[cfg(feature = "postgres")]
            postgres: _postgres,
            #[cfg(feature = "mongo")]
            mongo: _mongo,
            #[cfg(feature = "redis")]
            redis: _redis,
            #[cfg(feature = "redis")]
            cache: None,
            #[cfg(all(feature = "redis", feature = "postgres"))]
            replay: Default::default(),
            tenant: None,
        };
        #[cfg(feature = "redis")]
        store.attach_cache(&config)?;
        Ok(store)
    }

    /// Builds the repository cache on Redis and hands it to the database
    /// backends; with PostgreSQL and durable invalidation, also starts the
    /// outbox relay that replays invalidations Redis missed.
    #[cfg(feature = "redis")]
    fn attach_cache(&mut self, config: &Config) -> Result<()> {
        let (Some(redis), Some(options)) = (&self.redis, &config.cache) else {
            return Ok(());
        };
        let cache = build_cache(redis, options, config)?;
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.postgres.take() {
            let pg = pg.with_cache(cache.clone());
            if options.durable_invalidation {
                *self.replay.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(spawn_replay(&pg, &cache));
            }
            self.postgres = Some(pg);
        }
        #[cfg(feature = "mongo")]
        if let Some(mongo) = self.mongo.take() {
            self.mongo = Some(mongo.with_cache(cache.clone()));
        }
        self.cache = Some(cache);
        Ok(())
    }

    /// The repository cache (hit and miss counters, whether it is
    /// degraded), when Redis is configured and the cache is on.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn cache(&self) -> Option<&reposmith_core::cache::Cache> {
        self.cache.as_ref()
    }

    /// The PostgreSQL backend, or [`Error::Unavailable`] when not configured.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(&self) -> Result<&PgBackend> {
        self.postgres
            .as_ref()
            .ok_or_else(|| not_configured(Backend::Postgres, "DATABASE_URL"))
    }

    /// The MongoDB backend, or [`Error::Unavailable`] when not configured.
    #[cfg(feature = "mongo")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
    pub fn mongo(&self) -> Result<&MongoBackend> {
        self.mongo
            .as_ref()
            .ok_or_else(|| not_configured(Backend::Mongo, "MONGODB_URL"))
    }

    /// The backend that stores `E` (an entity pinned with
    /// `#[repo(backend = "..")]`), as the core [`DataStore`]: what generic
    /// code takes. [`Error::Unavailable`] when that backend is not configured.
    pub fn backend_of<E>(&self) -> Result<&HandleOf<E>>
    where
        E: Pinned,
        E::Home: HomeBackend,
    {
        E::Home::handle(self)
    }

    /// The repository of `E` on the pool of the backend that stores it:
    /// a [`PgRepository`](crate::PgRepository) or a
    /// [`MongoRepository`](crate::MongoRepository), picked from the entity's
    /// `#[repo(backend = "..")]`. [`Error::Unavailable`] when that backend is
    /// not configured. For an entity stored in both backends name the
    /// backend: `store.postgres()?.repo::<E>()`, `store.mongo()?.repo::<E>()`.
    ///
    /// ```no_run
    /// # use reposmith::prelude::*;
    /// # #[derive(Repository)] #[repo(backend = "postgres")]
    /// # struct Document { #[repo(id)] id: uuid::Uuid }
    /// # #[derive(Repository)]
    /// # #[repo(backend = "mongo", collection = "llm_traces")]
    /// # struct Trace { #[repo(id)] id: reposmith::ObjectId }
    /// # async fn run(store: Store) -> reposmith::Result<()> {
    /// let docs = store.repo::<Document>()?; // PostgreSQL
    /// let traces = store.repo::<Trace>()?; // MongoDB
    /// let total = docs.count(Filter::all()).await? + traces.count(Filter::all()).await?;
    /// # Ok(()) }
    /// ```
    pub fn repo<E>(&self) -> Result<RepoOf<E>>
    where
        E: Pinned + StoredIn<E::Home>,
        E::Home: HomeBackend,
    {
        // A tenant-scoped entity's repository is refused here, at once,
        // rather than on its first operation.
        RowScope::of_tenant(E::SCHEMA, self.tenant.as_ref()).check()?;
        Ok(self.backend_of::<E>()?.repo::<E>())
    }

    /// This store for `tenant`: every repository, unit of work and retried
    /// transaction taken from the returned handle is restricted to the
    /// tenant's rows of `#[repo(tenant)]` entities. Writes stamp the tenant
    /// (an entity whose tenant field is unset, `""`, the nil UUID or `0`,
    /// gets it; one carrying another tenant is refused with
    /// [`Error::InvalidInput`] naming the field); reads, searches, counts,
    /// streams, pages, updates and deletes never see another tenant's rows.
    /// Entities without a tenant field are shared and unaffected. A unit of
    /// work keeps the tenant it began with, and nested units inherit it.
    ///
    /// The tenant is checked first: non-empty, at most
    /// [`MAX_TENANT_LEN`](reposmith_core::tenant::MAX_TENANT_LEN) bytes, no
    /// NUL or control character, not the nil UUID or `0`. A repository of
    /// a tenant-scoped entity taken from a store *without* a tenant is
    /// refused: [`Store::repo`] returns the error at once, and backend
    /// handles' repositories return it from every operation.
    ///
    /// On PostgreSQL the tables of tenant-scoped entities also have a
    /// row-level security policy (see the `reposmith-postgres` docs); MongoDB
    /// has no row-level security, so there the repository's filter is the
    /// only guard.
    ///
    /// ```no_run
    /// # use reposmith::prelude::*;
    /// # #[derive(Debug, Clone, Repository)] #[repo(backend = "postgres")]
    /// # struct Passage { #[repo(id)] id: i64, #[repo(tenant)] org: String, body: String }
    /// # async fn run(store: Store) -> reposmith::Result<()> {
    /// let acme = store.for_tenant("acme")?;
    /// let passages = acme.repo::<Passage>()?;
    /// let stored = passages
    ///     .insert(&Passage { id: 0, org: String::new(), body: "hello".into() })
    ///     .await?;
    /// assert_eq!(stored.org, "acme");
    /// assert!(store.repo::<Passage>().is_err()); // no tenant, no repository
    /// # Ok(()) }
    /// ```
    pub fn for_tenant(&self, tenant: impl IntoTenant) -> Result<Store> {
        let tenant = tenant.into_tenant()?;
        let mut store = self.clone();
        #[cfg(feature = "postgres")]
        if let Some(pg) = &self.postgres {
            store.postgres = Some(pg.for_tenant(tenant.clone())?);
        }
        #[cfg(feature = "mongo")]
        if let Some(mongo) = &self.mongo {
            store.mongo = Some(mongo.for_tenant(tenant.clone())?);
        }
        store.tenant = Some(tenant);
        Ok(store)
    }

    /// The tenant of this handle, if it is one ([`Store::for_tenant`]).
    pub fn tenant(&self) -> Option<&Tenant> {
        self.tenant.as_ref()
    }

    /// Starts a unit of work (one transaction) on the backend that stores
    /// `E`, with that backend's defaults (READ COMMITTED on PostgreSQL, read
    /// concern `snapshot` on MongoDB): `uow.repo::<X>()` gives the
    /// repository of any entity of that backend on it, `commit()` ends it,
    /// and dropping it uncommitted rolls back.
    ///
    /// ```no_run
    /// # use reposmith::prelude::*;
    /// # #[derive(Repository)] #[repo(backend = "postgres")]
    /// # struct Document { #[repo(id)] id: uuid::Uuid, title: String }
    /// # async fn run(store: Store, doc: Document) -> reposmith::Result<()> {
    /// let uow = store.begin::<Document>().await?;
    /// uow.repo::<Document>().update(&doc).await?;
    /// uow.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn begin<E>(&self) -> Result<UnitOf<E>>
    where
        E: Pinned,
        E::Home: HomeBackend,
    {
        self.backend_of::<E>()?.begin().await
    }

    /// Runs `work` in a unit of work on the backend that stores `E` and
    /// commits it, running it again (bounded, with jittered backoff) when the
    /// server aborts it as retryable: a serialization failure or deadlock on
    /// PostgreSQL (units run at the configured `transaction_isolation`,
    /// SERIALIZABLE by default), a `TransientTransactionError` on MongoDB.
    /// `work` and its result must be `Send`; for a closure that is not, use
    /// the backend handle's own `transaction` (`store.postgres()?.transaction(..)`).
    ///
    /// ```no_run
    /// # use reposmith::prelude::*;
    /// # #[derive(Repository)] #[repo(backend = "postgres")]
    /// # struct Account { #[repo(id)] id: i64, balance: i64 }
    /// # async fn run(store: Store) -> reposmith::Result<()> {
    /// let balance = store
    ///     .transaction::<Account, _>(RetryPolicy::default(), |uow| {
    ///         Box::pin(async move {
    ///             let accounts = uow.repo::<Account>();
    ///             let Some(mut account) = accounts.get(&1).await? else {
    ///                 return Ok(0);
    ///             };
    ///             account.balance += 10;
    ///             Ok(accounts.update(&account).await?.balance)
    ///         })
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn transaction<E, T>(
        &self,
        policy: RetryPolicy,
        work: impl for<'u> FnMut(&'u UnitOf<E>) -> BoxFuture<'u, Result<T>> + Send,
    ) -> Result<T>
    where
        E: Pinned,
        E::Home: HomeBackend,
        T: Send,
    {
        self.backend_of::<E>()?.transaction(policy, work).await
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

    /// Stops the cache's invalidation relay, closes the Postgres pool and
    /// the Mongo client; Redis closes when the last clone drops.
    pub async fn close(&self) {
        #[cfg(all(feature = "redis", feature = "postgres"))]
        {
            let replay = self.replay.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(replay) = replay {
                let _ = replay.stop.send(true);
                let _ = replay.task.await;
            }
        }
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
        debug.field("tenant", &self.tenant);
        debug.finish()
    }
}

/// The cache over Redis, with the near cache when configured. With the
/// `near-cache` feature compiled in, every store publishes its
/// invalidations, so processes that keep a near cache hear of this one's
/// writes.
#[cfg(feature = "redis")]
#[cfg_attr(
    not(feature = "near-cache"),
    allow(unused_variables, reason = "only the near cache reads the config")
)]
fn build_cache(
    redis: &RedisBackend,
    options: &reposmith_core::cache::CacheOptions,
    config: &Config,
) -> Result<reposmith_core::cache::Cache> {
    #[allow(unused_mut, reason = "only the near cache changes it")]
    let mut store = redis.cache_store(options);
    #[cfg(feature = "near-cache")]
    {
        store = match &config.near_cache {
            Some(near) => store.with_near_cache(near.clone())?,
            None => store.publish_invalidations(true),
        };
    }
    reposmith_core::cache::Cache::new(std::sync::Arc::new(store), options.clone())
}

/// The background task replaying the cache's durable invalidations.
#[cfg(all(feature = "redis", feature = "postgres"))]
#[derive(Debug)]
struct ReplayTask {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the task that delivers the cache's durable invalidations through
/// an outbox relay. It waits for the outbox table to exist (an application
/// may create it after connecting), checking every two seconds; until then
/// writes of cached entities commit with their invalidation applied but not
/// made durable (the backend warns).
#[cfg(all(feature = "redis", feature = "postgres"))]
fn spawn_replay(pg: &PgBackend, cache: &reposmith_core::cache::Cache) -> ReplayTask {
    use reposmith_core::cache::{INVALIDATION_TOPIC, InvalidationReplay};
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (pg, cache) = (pg.clone(), cache.clone());
    let task = tokio::spawn(async move {
        loop {
            if *stopped.borrow() {
                return;
            }
            if let Ok(true) = pg.has_outbox_tables().await {
                break;
            }
            let wait = tokio::time::sleep(std::time::Duration::from_secs(2));
            tokio::select! {
                _ = wait => {}
                _ = stopped.changed() => return,
            }
        }
        let relay = reposmith_postgres::outbox::Relay::new(&pg)
            .topic(INVALIDATION_TOPIC, InvalidationReplay::new(cache));
        let Ok(relay) = relay else { return };
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(error) = relay.run(shutdown).await {
            tracing::warn!(%error, "the cache invalidation relay stopped");
        }
    });
    ReplayTask { stop, task }
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
        Some(pg) if config.clock.is_some() => {
            let mut pg = pg.clone();
            pg.clock = config.clock.clone().unwrap_or_default();
            Ok(Some(PgBackend::connect(&pg).await?))
        }
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
        Some(mongo) if config.clock.is_some() => {
            let mut mongo = mongo.clone();
            mongo.clock = config.clock.clone().unwrap_or_default();
            Ok(Some(MongoBackend::connect(&mongo).await?))
        }
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
