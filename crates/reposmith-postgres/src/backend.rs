//! The connected PostgreSQL backend: the connection pool repositories use,
//! built from [`PgConfig`], and a lazily connected sqlx `PgPool` for raw SQL.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reposmith_core::embed::Embedders;
use reposmith_core::{
    Backend, ConnectionUrl, Embedder, EntitySchema, Error, PostgresEntity, Result,
};

use reposmith_core::repository::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};

use crate::error::{ErrorContext, Phase};
use crate::executor::Held;
use crate::pool::{ConnectionPool, PooledConnection};
use crate::pooler::{self, TransactionSettings};
use crate::recall::RecallMonitor;
use crate::replica::{ReadStats, Replica, ReplicaStatus, Replicas, probe};
use crate::{PgConfig, PgHealth, PoolerMode};

/// Versions the health probe reads in one round trip.
const HEALTH_SQL: &str = "SELECT current_setting('server_version'), \
     (SELECT extversion FROM pg_extension WHERE extname = 'vector'), \
     (SELECT default_version FROM pg_available_extensions WHERE name = 'vector')";

/// A connected PostgreSQL backend. Cloning shares the pool.
#[derive(Clone)]
pub struct PgBackend {
    connections: Arc<ConnectionPool>,
    /// sqlx's pool, for raw SQL; connects only when used.
    pool: PgPool,
    url: ConnectionUrl,
    acquire_timeout: Duration,
    statement_timeout: Option<Duration>,
    /// The `hnsw.ef_search` sessions start with.
    ef_search: u32,
    /// Embedders by entity type, given to every repository of that entity.
    embedders: Embedders,
    /// The recall monitor and tuner (inert unless configured).
    recall: Arc<RecallMonitor>,
    /// Whether sessions run pgvector's iterative scans, and how to turn
    /// them on once the extension appears after connect.
    iterative: Arc<IterativeScan>,
    /// Isolation level of units run by `transaction`.
    pub(crate) transaction_isolation: crate::IsolationLevel,
    /// The repository cache, when one is attached ([`PgBackend::with_cache`]).
    pub(crate) cache: Option<reposmith_core::cache::Cache>,
    /// Whether the outbox table exists, for durable invalidations.
    pub(crate) outbox: Arc<crate::cache::OutboxPresence>,
    /// The read replicas and their router, when configured.
    pub(crate) replicas: Option<Arc<Replicas>>,
    /// How statements are sent (see the `pooler` module).
    pooler: PoolerMode,
    /// The tenant of this handle ([`PgBackend::for_tenant`]): repositories
    /// and units taken from it are restricted to the tenant's rows.
    pub(crate) tenant: Option<Arc<crate::tenant::HandleTenant>>,
    /// The time repositories stamp rows with ([`PgConfig::clock`](field@PgConfig::clock)).
    clock: reposmith_core::Clock,
}

/// pgvector's iterative scans: wanted by the config, and on in the sessions
/// once the database has pgvector 0.8 or newer.
struct IterativeScan {
    wanted: bool,
    on: AtomicBool,
    /// The connect options without the iterative-scan settings.
    base: PgConnectOptions,
}

impl PgBackend {
    /// Opens one connection to prove the server is reachable and accepts the
    /// credentials, then builds the pool.
    ///
    /// The probe connection is opened directly rather than through the pool:
    /// a pool that cannot connect keeps retrying until its acquire timeout and
    /// then reports only "timed out", hiding the refused port or bad password.
    #[tracing::instrument(name = "reposmith.connect", skip_all,
        fields(db.system = "postgresql", server.address = %config.url.target()))]
    pub async fn connect(config: &PgConfig) -> Result<Self> {
        config.validate()?;
        let base = connect_options(config)?;
        let deadline = config.connect_timeout;
        let context = ErrorContext {
            url: &config.url,
            acquire_timeout: config.acquire_timeout,
            statement_timeout: config.statement_timeout,
        };
        let timed_out =
            || Error::connect_timed_out(Backend::Postgres, config.url.target(), deadline);
        let mut probe = tokio::time::timeout(deadline, pooler::open_probe(config, &base, &context))
            .await
            .map_err(|_| timed_out())??;
        let on = match config.iterative_scan {
            true => {
                tokio::time::timeout(deadline, enable_iterative_scan(&mut probe, config.pooler))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| context.map(e, Phase::Connect))?
            }
            false => false,
        };
        // Behind a transaction pooler the scans' settings are replayed per
        // transaction (`transaction_settings`), never sent at connect.
        let with_scan = |options: PgConnectOptions| match on && config.pooler == PoolerMode::Direct
        {
            true => options.options(ITERATIVE_SCAN),
            false => options,
        };
        let transaction = |url: &ConnectionUrl| transaction_settings(config, url, on);
        if let Some(settings) = transaction(&config.url)? {
            // A setting the server refuses (a typo, one only settable at
            // connect) fails here, not in every later operation.
            let trial = format!("{}; ROLLBACK", settings.begin("BEGIN"));
            let tried = sqlx::raw_sql(sqlx::AssertSqlSafe(trial)).execute(&mut probe);
            tokio::time::timeout(deadline, tried)
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| context.map(e, Phase::Connect))?;
        }
        let options = with_scan(base.clone());
        let replicas = match config.replicas.urls.is_empty() {
            true => None,
            false => {
                Some(connect_replicas(config, &mut probe, &context, with_scan, transaction).await?)
            }
        };
        let backend = PgBackend {
            connections: ConnectionPool::new(options.clone(), transaction(&config.url)?, config),
            pool: pool_options(config).connect_lazy_with(options),
            url: config.url.clone(),
            acquire_timeout: config.acquire_timeout,
            statement_timeout: config.statement_timeout,
            ef_search: config.ef_search.unwrap_or(DEFAULT_EF_SEARCH),
            embedders: Embedders::default(),
            recall: Arc::new(RecallMonitor::new(
                config.recall.clone(),
                config.ef_search.unwrap_or(DEFAULT_EF_SEARCH),
            )),
            iterative: Arc::new(IterativeScan {
                wanted: config.iterative_scan,
                on: AtomicBool::new(on),
                base,
            }),
            transaction_isolation: config.transaction_isolation,
            cache: None,
            outbox: Arc::default(),
            replicas,
            pooler: config.pooler,
            tenant: None,
            clock: config.clock.clone(),
        };
        // The proven connection serves the first operation.
        backend.connections.adopt(probe);
        let warm = tokio::time::timeout(deadline, backend.connections.warm_up()).await;
        warm.map_err(|_| Error::connect_timed_out(Backend::Postgres, backend.target(), deadline))?
            .map_err(|e| backend.error_context().map(e, Phase::Connect))
            .inspect_err(|error| tracing::debug!(%error, "connect failed"))?;
        tracing::debug!("postgresql pool ready");
        Ok(backend)
    }

    /// A sqlx pool for raw SQL beside repositories, with the same settings
    /// (in [`PoolerMode::Transaction`](crate::PoolerMode), without them: no
    /// `statement_timeout` or URL `options`, and statements run bare, so
    /// wrap those with parameters in `BEGIN`/`COMMIT` and `SET LOCAL` what
    /// they need).
    /// It is separate from the connections repositories use (see the `pool`
    /// module: sqlx's pool pings on every release) and connects on first use,
    /// so its connections count against the server's limit on their own.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The clock repositories of this backend stamp rows with
    /// ([`PgConfig::clock`](field@PgConfig::clock)).
    pub fn clock(&self) -> &reposmith_core::Clock {
        &self.clock
    }

    /// Host, port and database, without credentials.
    pub fn target(&self) -> &str {
        self.url.target()
    }

    /// A connection from the repositories' pool, or [`Error::PoolTimeout`]
    /// after the acquire timeout. It goes back when dropped only if the last
    /// statement on it was settled cleanly ([`PooledConnection::settle`]).
    ///
    /// With [`PoolerMode::Transaction`] the connection is in no transaction
    /// and its session has none of the configured settings: run statements
    /// with parameters inside `BEGIN` ... `COMMIT` on it (see the crate
    /// docs, "Behind PgBouncer").
    pub async fn acquire(&self) -> Result<PooledConnection> {
        let mut connection = self.acquire_raw().await?;
        // A raw connection never carries a tenant: the row-level security
        // policy then shows it no tenant's rows.
        if connection.tenant().is_some() {
            let reset = crate::tenant::tag_session(&mut connection, None).await;
            reset.map_err(|e| self.map_error(e))?;
        }
        Ok(connection)
    }

    /// A pooled connection as it comes, its session's tenant (if any) kept:
    /// for reposmith's own statements on tables without tenants.
    pub(crate) async fn acquire_raw(&self) -> Result<PooledConnection> {
        self.connections.acquire().await.map_err(|e| {
            e.into_error(self.acquire_timeout, |err| {
                self.error_context().map(err, Phase::Connect)
            })
        })
    }

    /// Gives every repository of `E` from now on, on the pool and in units of
    /// work, this embedder (see [`PgRepository::with_embedder`](crate::PgRepository::with_embedder)).
    pub fn set_embedder<E: PostgresEntity>(&self, embedder: Arc<dyn Embedder>) {
        self.embedders.set::<E>(embedder);
    }

    /// This backend with the repository cache `cache`: from now on, pool
    /// reads of entities declaring `#[repo(cache(..))]` go through it, and
    /// every committed write of such an entity invalidates its entries
    /// after COMMIT (see the crate docs, "The repository cache").
    /// The facade's `Store` attaches the Redis cache itself when Redis is
    /// configured.
    pub fn with_cache(mut self, cache: reposmith_core::cache::Cache) -> Self {
        // The whole URL (password redacted): options such as a search_path
        // name a different set of tables on the same database.
        self.cache = Some(cache.for_database(Backend::Postgres, &self.url.to_string()));
        self
    }

    /// The attached repository cache, if any.
    pub fn cache(&self) -> Option<&reposmith_core::cache::Cache> {
        self.cache.as_ref()
    }

    /// The embedder registered for entity type `E`, if any.
    pub(crate) fn embedder_for<E: 'static>(&self) -> Option<Arc<dyn Embedder>> {
        self.embedders.get::<E>()
    }

    /// The recall monitor: its report, and pause/resume (see [`crate::recall`]).
    pub fn recall(&self) -> &RecallMonitor {
        &self.recall
    }

    /// The `hnsw.ef_search` this backend's sessions start with.
    pub(crate) fn ef_search(&self) -> u32 {
        self.ef_search
    }

    /// The most bytes one statement may bind (and one `COPY` row carry).
    pub(crate) fn max_bind_bytes(&self) -> usize {
        self.connections.max_bind_bytes()
    }

    /// The server-side `statement_timeout` this backend's sessions run with.
    pub(crate) fn statement_timeout(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// `text` with this backend's URL secrets masked.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.url.scrub(text)
    }

    /// Maps a sqlx error from an operation on this backend onto the core error.
    pub fn map_error(&self, err: sqlx::Error) -> Error {
        self.error_context().map(err, Phase::Operation)
    }

    /// Maps a sqlx error from an operation on `schema`'s table: conflicts,
    /// retryable aborts and refused values name the entity and field.
    pub(crate) fn map_entity_error(
        &self,
        err: sqlx::Error,
        schema: &'static EntitySchema,
    ) -> Error {
        self.error_context().map_for(err, schema)
    }

    /// How statements are sent: [`PoolerMode::Direct`] or, behind a
    /// transaction pooler, [`PoolerMode::Transaction`].
    pub fn pooler(&self) -> PoolerMode {
        self.pooler
    }

    /// Runs `op` on a pooled connection to the primary in the pooler mode's
    /// statement shape (see the `pooler` module), for statements that are
    /// not a repository's.
    pub(crate) async fn on_pool<T, F>(&self, op: F) -> Result<T>
    where
        F: for<'c, 'h> FnOnce(&'c mut Held<'h>) -> BoxFuture<'c, sqlx::Result<T>> + Send,
        T: Send,
    {
        let mut held = Held::Pooled(self.acquire_raw().await?);
        match pooler::run(&mut held, op).await {
            Ok(value) => Ok(value),
            // Behind a pooler some of these are writes (outbox replay,
            // purge): a COMMIT that broke may have committed.
            Err(failed) if failed.at_commit => Err(crate::unit::commit_error(self, failed.error)),
            Err(failed) => Err(self.map_error(failed.error)),
        }
    }

    /// Round trip through the pool reading the server and pgvector versions.
    #[tracing::instrument(name = "reposmith.ping", skip_all, fields(db.system = "postgresql"))]
    pub async fn ping(&self) -> Result<PgHealth> {
        let started = Instant::now();
        let (server_version, pgvector_installed, pgvector_available) = self
            .on_pool(|held| {
                let query =
                    sqlx::query_as::<_, (String, Option<String>, Option<String>)>(HEALTH_SQL);
                Box::pin(query.fetch_one(&mut **held))
            })
            .await?;
        Ok(PgHealth {
            target: self.target().to_owned(),
            server_version,
            pgvector_installed,
            pgvector_available,
            round_trip: started.elapsed(),
            pool_size: self.connections.size(),
            pool_idle: self.connections.num_idle(),
        })
    }

    /// Closes every connection and refuses new acquires.
    pub async fn close(&self) {
        if let Some(replicas) = &self.replicas {
            replicas.stop_probe();
            for replica in &replicas.members {
                replica.pool.close().await;
            }
        }
        self.connections.close().await;
        self.pool.close().await;
    }

    /// Where reads ran since connect (all zero without replicas).
    pub fn read_stats(&self) -> ReadStats {
        self.replicas
            .as_ref()
            .map(|replicas| replicas.stats())
            .unwrap_or_default()
    }

    /// What the probe last saw of each configured replica (empty without
    /// replicas): up or down, lag, replay position, whether it serves reads.
    pub fn replicas(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .as_ref()
            .map(|replicas| replicas.status())
            .unwrap_or_default()
    }

    pub(crate) fn error_context(&self) -> ErrorContext<'_> {
        ErrorContext {
            url: &self.url,
            acquire_timeout: self.acquire_timeout,
            statement_timeout: self.statement_timeout,
        }
    }
}

impl fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBackend")
            .field("url", &self.url)
            .field("tenant", &self.tenant)
            .field("pool_size", &self.connections.size())
            .field("pool_idle", &self.connections.num_idle())
            .finish()
    }
}

/// sqlx connect options from the config; never logged (sqlx's `Debug` shows the password).
fn connect_options(config: &PgConfig) -> Result<PgConnectOptions> {
    connect_options_to(config, &config.url)
}

/// The config's session settings for the server at `url` (the primary or
/// a replica): startup options in Direct mode; behind a transaction pooler
/// none at all (they are replayed per transaction, see
/// [`transaction_settings`]) and no statement cache.
fn connect_options_to(config: &PgConfig, url: &ConnectionUrl) -> Result<PgConnectOptions> {
    if config.pooler == PoolerMode::Transaction {
        return pooler::connect_options(config, url);
    }
    let options = parse_url(url)?
        .application_name(&config.application_name)
        .statement_cache_capacity(config.statement_cache_capacity);
    let settings = session_settings(config);
    Ok(match settings.is_empty() {
        true => options,
        false => options.options(settings),
    })
}

/// `url` as sqlx's connect options, or [`Error::Config`] without its secrets.
pub(crate) fn parse_url(url: &ConnectionUrl) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url.expose())
        .map_err(|e| Error::config("postgresql", url.scrub(&e.to_string())))
}

/// The settings every session runs with, in `options` order.
fn session_settings(config: &PgConfig) -> Vec<(String, String)> {
    let mut settings = Vec::new();
    if let Some(timeout) = config.statement_timeout {
        let millis = timeout.as_millis().to_string();
        settings.push(("statement_timeout".to_owned(), millis));
    }
    if let Some(ef_search) = config.ef_search {
        settings.push(("hnsw.ef_search".to_owned(), ef_search.to_string()));
    }
    settings
}

/// Behind a transaction pooler, what each transaction on the server at
/// `url` replays (see [`pooler::transaction_settings`]): the session
/// settings, and the iterative scans when `scan`. `None` in Direct mode.
fn transaction_settings(
    config: &PgConfig,
    url: &ConnectionUrl,
    scan: bool,
) -> Result<Option<TransactionSettings>> {
    let mut settings = session_settings(config);
    if scan {
        settings.extend(ITERATIVE_SCAN.map(|(n, v)| (n.to_owned(), v.to_owned())));
    }
    pooler::transaction_settings(config, url, settings)
}

fn pool_options(config: &PgConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(config.min_connections)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .test_before_acquire(config.test_before_acquire)
}

/// The replicas' pools, each replica checked to be a standby of the
/// primary `probe` is connected to, and their probe started. A replica that
/// does not answer starts down; one that answers but is not a standby of
/// this primary is a configuration error.
async fn connect_replicas(
    config: &PgConfig,
    probe: &mut PgConnection,
    context: &ErrorContext<'_>,
    with_scan: impl Fn(PgConnectOptions) -> PgConnectOptions,
    transaction: impl Fn(&ConnectionUrl) -> Result<Option<TransactionSettings>>,
) -> Result<Arc<Replicas>> {
    let deadline = config.connect_timeout;
    let (system, head) = tokio::time::timeout(deadline, probe::primary_system(probe, &config.url))
        .await
        .map_err(|_| Error::connect_timed_out(Backend::Postgres, config.url.target(), deadline))?
        .map_err(|e| context.map(e, Phase::Connect))?;
    let mut members = Vec::new();
    let mut options = Vec::new();
    for url in &config.replicas.urls {
        let base = connect_options_to(config, url)?;
        let replica_options = with_scan(base.clone());
        let pool = ConnectionPool::new(replica_options.clone(), transaction(url)?, config);
        members.push(Replica::new(url.clone(), base, pool));
        options.push(replica_options);
    }
    let checks = members.iter().zip(&options).map(|(replica, options)| {
        let system = system.as_str();
        async move {
            let primary = (system, head);
            let replica_at = (options, config.pooler);
            let up = probe::check_at_connect(replica, replica_at, primary, deadline).await?;
            replica.set_up(up, "answering and in recovery at connect");
            Ok::<(), Error>(())
        }
    });
    for outcome in futures_util::future::join_all(checks).await {
        outcome?;
    }
    let replicas = Arc::new(Replicas::new(members, config.replicas.clone()));
    let target = probe::ProbeTarget {
        pooler: config.pooler,
        primary: with_scan(connect_options(config)?),
        replicas: options,
        system,
    };
    probe::spawn(&replicas, target);
    Ok(replicas)
}

/// pgvector's default `hnsw.ef_search`.
pub(crate) const DEFAULT_EF_SEARCH: u32 = 40;

/// pgvector's settings for iterative index scans, as startup options.
const ITERATIVE_SCAN: [(&str, &str); 2] = [
    ("hnsw.iterative_scan", "relaxed_order"),
    ("ivfflat.iterative_scan", "relaxed_order"),
];

/// Turns iterative scans on in `connection`'s session when the database has
/// pgvector 0.8 or newer; says whether it did. Only then: a server
/// preloading an older pgvector reserves the `hnsw.` prefix and would refuse
/// every connection naming an unknown setting in it. Behind a transaction
/// pooler only the version is read: a session setting would stay on a
/// server connection other clients get next, so the scans are replayed per
/// transaction instead.
async fn enable_iterative_scan(
    connection: &mut PgConnection,
    mode: PoolerMode,
) -> sqlx::Result<bool> {
    // One simple-protocol statement: correct through a pooler on its own.
    let sql = "SELECT extversion FROM pg_extension WHERE extname = 'vector'";
    let row = sqlx::raw_sql(sql).fetch_optional(&mut *connection).await?;
    let version: Option<String> = row.map(|row| row.try_get(0)).transpose()?;
    if !version.as_deref().is_some_and(supports_iterative_scan) {
        return Ok(false);
    }
    if mode == PoolerMode::Transaction {
        return Ok(true);
    }
    for (name, value) in ITERATIVE_SCAN {
        sqlx::query("SELECT set_config($1, $2, false)")
            .bind(name)
            .bind(value)
            .execute(&mut *connection)
            .await?;
    }
    Ok(true)
}

impl PgBackend {
    /// After DDL that may have created pgvector (`create_tables`): when the
    /// config wants iterative scans and they were off because the extension
    /// did not exist at connect, turn them on for every session from now on
    /// (sessions opened before are closed when next met). sqlx's raw pool
    /// ([`PgBackend::pool`]) keeps the settings it connected with.
    pub(crate) async fn refresh_iterative_scan(&self) -> Result<()> {
        let scan = &self.iterative;
        if !scan.wanted || scan.on.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut connection = self.acquire_raw().await?;
        let outcome = enable_iterative_scan(&mut connection, self.pooler).await;
        connection.settle(&outcome);
        if outcome.map_err(|e| self.map_error(e))? && !scan.on.swap(true, Ordering::AcqRel) {
            self.connections
                .add_settings(scan.base.clone(), &ITERATIVE_SCAN);
            // Replicas replay the extension from the primary; their
            // sessions turn the scans on from their next connection.
            for replica in self.replicas.iter().flat_map(|r| &r.members) {
                replica
                    .pool
                    .add_settings(replica.base.clone(), &ITERATIVE_SCAN);
            }
            tracing::debug!("pgvector appeared after connect: iterative scans on");
        }
        Ok(())
    }
}

/// Whether pgvector `version` (such as `0.8.1`) has iterative index scans.
fn supports_iterative_scan(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (0, 8)
}

#[cfg(test)]
mod iterative_scan_tests {
    use super::supports_iterative_scan;

    #[test]
    fn iterative_scans_arrived_in_pgvector_0_8() {
        for (version, expected) in [
            ("0.8.0", true),
            ("0.8.5", true),
            ("0.10.1", true),
            ("1.0", true),
            ("0.7.4", false),
            ("0.5", false),
            ("", false),
        ] {
            assert_eq!(supports_iterative_scan(version), expected, "{version}");
        }
    }
}
