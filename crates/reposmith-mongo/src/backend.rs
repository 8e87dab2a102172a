//! The connected MongoDB backend: a driver client built from [`MongoConfig`].

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use reposmith_core::cache::Cache;
use reposmith_core::embed::Embedders;
use reposmith_core::{Backend, ConnectionUrl, Embedder, Error, MongoEntity, Result};

use crate::config::DEFAULT_DATABASE;
use crate::error::{Phase, map};
use crate::{MongoCapabilities, MongoConfig};

/// A connected MongoDB backend. Cloning shares the client and its pools.
#[derive(Clone)]
pub struct MongoBackend {
    client: Client,
    database: Database,
    url: ConnectionUrl,
    capabilities: MongoCapabilities,
    operation_timeout: Duration,
    /// Embedders by entity type, given to every repository of that entity.
    embedders: Embedders,
    /// The repository cache, when one is attached (see [`MongoBackend::with_cache`]).
    cache: Option<Cache>,
    /// The tenant of this handle ([`MongoBackend::for_tenant`]).
    pub(crate) tenant: Option<reposmith_core::Tenant>,
    /// The time repositories stamp documents with ([`MongoConfig::clock`](field@MongoConfig::clock)).
    clock: reposmith_core::Clock,
}

/// Health of a MongoDB server as seen through the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MongoHealth {
    /// Hosts and database, without credentials.
    pub target: String,
    /// Database repositories use.
    pub database: String,
    /// What the server can do, as probed now.
    pub capabilities: MongoCapabilities,
    /// Time for the probe commands.
    pub round_trip: Duration,
}

impl fmt::Display for MongoHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let caps = &self.capabilities;
        let topology = match (&caps.replica_set, caps.sharded) {
            (Some(name), _) => format!("replica set {name}"),
            (None, true) => "sharded".to_owned(),
            (None, false) => "standalone".to_owned(),
        };
        write!(
            f,
            "MongoDB {} at {} (db {}): wire version {}, {topology}, transactions {}; round trip {:?}",
            caps.server_version,
            self.target,
            self.database,
            caps.max_wire_version,
            if caps.transactions {
                "supported"
            } else {
                "unsupported"
            },
            self.round_trip
        )
    }
}

impl MongoBackend {
    /// Builds the client and runs `hello` and `buildInfo`, so an unreachable
    /// server or rejected credentials fail here rather than at the first query.
    #[tracing::instrument(name = "reposmith.connect", skip_all,
        fields(db.system = "mongodb", server.address = %config.url.target()))]
    pub async fn connect(config: &MongoConfig) -> Result<Self> {
        config.validate()?;
        let url = config.url.clone();
        let options = client_options(config).await?;
        let database_name = config
            .database
            .clone()
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let client = Client::with_options(options).map_err(|e| map(&url, e, Phase::Connect))?;
        let deadline = config.server_selection_timeout + config.connect_timeout;
        let database = client.database(&database_name);
        let probed = probe(&client, &database, &url, deadline, Phase::Connect).await;
        let capabilities = probed.inspect_err(|error| tracing::debug!(%error, "connect failed"))?;
        tracing::debug!(server_version = %capabilities.server_version, "mongodb client ready");
        Ok(MongoBackend {
            database,
            client,
            url,
            capabilities,
            operation_timeout: config.operation_timeout,
            embedders: Embedders::default(),
            cache: None,
            tenant: None,
            clock: config.clock.clone(),
        })
    }

    /// This backend with the repository cache `cache` (the facade's `Store`
    /// attaches one when Redis is configured): repositories taken from it
    /// afterwards read entities that declare `#[repo(cache(..))]` through
    /// the cache and invalidate it after their writes. See the `cache`
    /// module for what is promised, and what is not: MongoDB has no
    /// transactional outbox in reposmith, so a missed invalidation lasts
    /// until the entry's TTL.
    pub fn with_cache(mut self, cache: Cache) -> Self {
        let database = format!("{}/{}", self.url.target(), self.database().name());
        self.cache = Some(cache.for_database(Backend::Mongo, &database));
        self
    }

    /// The repository cache attached with [`with_cache`](Self::with_cache), if any.
    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// Gives every repository of `E` from now on, on the client and in
    /// units of work, this embedder (see
    /// [`MongoRepository::with_embedder`](crate::MongoRepository::with_embedder)).
    pub fn set_embedder<E: MongoEntity>(&self, embedder: Arc<dyn Embedder>) {
        self.embedders.set::<E>(embedder);
    }

    /// The embedder registered for entity type `E`, if any.
    pub(crate) fn embedder_for<E: 'static>(&self) -> Option<Arc<dyn Embedder>> {
        self.embedders.get::<E>()
    }

    /// The driver client, for direct use beside repositories.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The database repositories use.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// What the server could do when the client connected.
    pub fn capabilities(&self) -> &MongoCapabilities {
        &self.capabilities
    }

    /// The deadline reposmith puts around each operation.
    pub(crate) fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// Runs one driver command under the operation deadline, leaving its
    /// error unmapped for callers that inspect it.
    pub(crate) async fn bounded<T>(
        &self,
        operation: &'static str,
        command: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>> {
        let after = self.operation_timeout;
        tokio::time::timeout(after, command.into_future())
            .await
            .map_err(|_| Error::Timeout {
                backend: Backend::Mongo,
                operation,
                after,
            })
    }

    /// The clock repositories of this backend stamp documents with
    /// ([`MongoConfig::clock`](field@MongoConfig::clock)).
    pub fn clock(&self) -> &reposmith_core::Clock {
        &self.clock
    }

    /// Hosts and database, without credentials.
    pub fn target(&self) -> &str {
        self.url.target()
    }

    /// Maps a driver error from an operation on this backend onto the core error.
    pub fn map_error(&self, err: mongodb::error::Error) -> Error {
        map(&self.url, err, Phase::Operation)
    }

    /// Probes the server again and reports its health.
    #[tracing::instrument(name = "reposmith.ping", skip_all, fields(db.system = "mongodb"))]
    pub async fn ping(&self) -> Result<MongoHealth> {
        let started = Instant::now();
        let capabilities = probe(
            &self.client,
            &self.database,
            &self.url,
            self.operation_timeout,
            Phase::Operation,
        )
        .await?;
        Ok(MongoHealth {
            target: self.target().to_owned(),
            database: self.database.name().to_owned(),
            capabilities,
            round_trip: started.elapsed(),
        })
    }

    /// Closes the client's connections; later operations fail with [`Error::Unavailable`].
    pub async fn close(&self) {
        self.client.clone().shutdown().await;
    }
}

impl fmt::Debug for MongoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoBackend")
            .field("url", &self.url)
            .field("database", &self.database.name())
            .field("capabilities", &self.capabilities)
            .field("cache", &self.cache.is_some())
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// Driver options from the URL, with the config's values where the URL is silent.
async fn client_options(config: &MongoConfig) -> Result<ClientOptions> {
    let url = &config.url;
    // Parsing a mongodb+srv:// URL resolves DNS: bound it like a connect.
    let parsed = tokio::time::timeout(config.connect_timeout, ClientOptions::parse(url.expose()))
        .await
        .map_err(|_| {
            Error::connect_timed_out(Backend::Mongo, url.target(), config.connect_timeout)
        })?;
    let mut options = parsed.map_err(|e| map(url, e, Phase::Connect))?;
    options
        .app_name
        .get_or_insert_with(|| config.app_name.clone());
    options.max_pool_size = options.max_pool_size.or(config.max_pool_size);
    options.min_pool_size = options.min_pool_size.or(config.min_pool_size);
    options
        .connect_timeout
        .get_or_insert(config.connect_timeout);
    options
        .server_selection_timeout
        .get_or_insert(config.server_selection_timeout);
    options.max_idle_time = options.max_idle_time.or(config.max_idle_time);
    options.read_concern = options
        .read_concern
        .take()
        .or_else(|| config.read_concern.clone());
    options.write_concern = options
        .write_concern
        .take()
        .or_else(|| config.write_concern.clone());
    Ok(options)
}

/// Runs `hello`, `buildInfo` and the search probe within `deadline`.
async fn probe(
    client: &Client,
    database: &Database,
    url: &ConnectionUrl,
    deadline: Duration,
    phase: Phase,
) -> Result<MongoCapabilities> {
    let admin = client.database("admin");
    let replies = async {
        let hello = admin.run_command(doc! { "hello": 1 }).await?;
        let build_info = admin.run_command(doc! { "buildInfo": 1 }).await?;
        let search = search_probe(database).await;
        Ok::<_, mongodb::error::Error>((hello, build_info, search))
    };
    let (hello, build_info, search) = tokio::time::timeout(deadline, replies)
        .await
        .map_err(|_| match phase {
            Phase::Connect => Error::connect_timed_out(Backend::Mongo, url.target(), deadline),
            Phase::Operation => Error::Timeout {
                backend: Backend::Mongo,
                operation: "hello",
                after: deadline,
            },
        })?
        .map_err(|e| map(url, e, phase))?;
    Ok(MongoCapabilities::from_replies(&hello, &build_info).with_search_probe(search))
}

/// Collection the search probe lists the search indexes of; it need not exist.
const SEARCH_PROBE_COLLECTION: &str = "reposmith_search_probe";

/// `$listSearchIndexes` on a probe collection: `Ok` or the refusal's code.
async fn search_probe(database: &Database) -> std::result::Result<(), Option<i32>> {
    let command = doc! {
        "aggregate": SEARCH_PROBE_COLLECTION,
        "pipeline": [{ "$listSearchIndexes": {} }],
        "cursor": {},
    };
    match database.run_command(command).await {
        Ok(_) => Ok(()),
        Err(e) => Err(match &*e.kind {
            mongodb::error::ErrorKind::Command(c) => Some(c.code),
            _ => None,
        }),
    }
}
