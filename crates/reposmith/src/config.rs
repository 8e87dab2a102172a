//! Which stores to connect to and how: one [`Config`] for the whole application.

use reposmith_core::Result;
use reposmith_core::config::Env;

#[cfg(feature = "mongo")]
use crate::MongoConfig;
#[cfg(feature = "postgres")]
use crate::PgConfig;
#[cfg(feature = "redis")]
use crate::RedisConfig;

/// The stores an application uses. A backend left `None` is not connected.
///
/// Build it in code with the `with_*` methods, or read it with
/// [`Config::from_env`]. `Debug` never shows a password.
///
/// # TLS
///
/// A URL that would go unencrypted to a host other than this machine is
/// refused ([`Error::Config`](crate::Error::Config) naming it, password
/// masked): PostgreSQL without `sslmode=require`/`verify-ca`/`verify-full`
/// (no `sslmode`, `prefer` and `allow` fall back to plaintext silently, so
/// they count as plaintext), `mongodb://` without `tls=true`, `redis://`.
/// `localhost`, `127.0.0.0/8`, `::1` and Unix sockets are always allowed.
/// Allow plaintext on purpose per backend (`PgConfig::allow_plaintext`,
/// `MongoConfig::allow_plaintext`, `RedisConfig::allow_plaintext`) or for
/// all with `REPOSMITH_ALLOW_PLAINTEXT=1`. TLS needs the `tls` feature for
/// PostgreSQL and Redis; a URL asking for it without the feature is an
/// `Error::Config` naming the feature. Details: `reposmith_core::tls`.
///
/// # Migrations as the owner, the application as a role without DDL
///
/// `DATABASE_URL` is the application's; `REPOSMITH_MIGRATION_DATABASE_URL`
/// (`PgConfig::migration_url`) names the schema owner migrations run as
/// (`reposmith::migrate::Connection::for_config`, and the migrate CLI,
/// read it; without it they use `DATABASE_URL`). Nothing reposmith runs on
/// its own issues DDL, so the application role needs only `USAGE` on the
/// schema and DML on its tables; DDL it tries anyway is
/// [`Error::PermissionDenied`](crate::Error::PermissionDenied). The grants
/// are in the `reposmith-postgres` crate docs, "TLS and least privilege".
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// PostgreSQL settings.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub postgres: Option<PgConfig>,
    /// MongoDB settings.
    #[cfg(feature = "mongo")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
    pub mongo: Option<MongoConfig>,
    /// Redis settings.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub redis: Option<RedisConfig>,
    /// The repository cache on Redis, used when Redis is configured:
    /// default options unless set; `None` turns it off
    /// (`REPOSMITH_CACHE=off`). Entities opt in with `#[repo(cache(..))]`.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub cache: Option<reposmith_core::cache::CacheOptions>,
    /// The near cache (L1) in front of the Redis cache: off unless set.
    /// Microsecond hits, at a price: another process's commit may go unseen
    /// for up to its TTL (1 s by default); see `reposmith::cache`.
    #[cfg(feature = "near-cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "near-cache")))]
    pub near_cache: Option<reposmith_redis::cache::NearCacheOptions>,
    /// The clock every database backend's repositories stamp timestamps
    /// with, replacing the one in each backend's settings when set (`None`:
    /// each backend's own, the system clock unless set there). See
    /// [`Config::with_clock`].
    pub clock: Option<reposmith_core::Clock>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            #[cfg(feature = "postgres")]
            postgres: None,
            #[cfg(feature = "mongo")]
            mongo: None,
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "redis")]
            cache: Some(reposmith_core::cache::CacheOptions::default()),
            #[cfg(feature = "near-cache")]
            near_cache: None,
            clock: None,
        }
    }
}

impl Config {
    /// A configuration with no backend; add them with the `with_*` methods.
    pub fn new() -> Self {
        Config::default()
    }

    /// Reads `DATABASE_URL`, `MONGODB_URL`, `REDIS_URL` and the tuning
    /// variables each backend documents (`REPOSMITH_MIGRATION_DATABASE_URL`
    /// and `REPOSMITH_ALLOW_PLAINTEXT` among them), from the process
    /// environment.
    ///
    /// Fails when a variable is malformed (the error names it) or when no
    /// backend URL is set at all.
    pub fn from_env() -> Result<Self> {
        Config::from_env_source(&Env::process())
    }

    /// Like [`Config::from_env`], reading from any [`Env`] (tests use a map).
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mongo", feature = "redis")),
        allow(
            unused_variables,
            reason = "no backend compiled in reads the environment"
        )
    )]
    pub fn from_env_source(env: &Env<'_>) -> Result<Self> {
        let config = Config {
            #[cfg(feature = "postgres")]
            postgres: PgConfig::from_env(env)?,
            #[cfg(feature = "mongo")]
            mongo: MongoConfig::from_env(env)?,
            #[cfg(feature = "redis")]
            redis: RedisConfig::from_env(env)?,
            #[cfg(feature = "redis")]
            cache: cache_from_env(env)?,
            #[cfg(feature = "near-cache")]
            near_cache: None,
            clock: None,
        };
        if config.is_empty() {
            return Err(reposmith_core::Error::config(
                "environment",
                format!("no backend configured: set {}", enabled_url_variables()),
            ));
        }
        Ok(config)
    }

    /// True when no backend is configured.
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mongo", feature = "redis")),
        allow(unused_mut, reason = "nothing to clear without a backend")
    )]
    pub fn is_empty(&self) -> bool {
        let mut empty = true;
        #[cfg(feature = "postgres")]
        {
            empty &= self.postgres.is_none();
        }
        #[cfg(feature = "mongo")]
        {
            empty &= self.mongo.is_none();
        }
        #[cfg(feature = "redis")]
        {
            empty &= self.redis.is_none();
        }
        empty
    }

    /// Adds PostgreSQL.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn with_postgres(mut self, config: PgConfig) -> Self {
        self.postgres = Some(config);
        self
    }

    /// Adds MongoDB.
    #[cfg(feature = "mongo")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
    pub fn with_mongo(mut self, config: MongoConfig) -> Self {
        self.mongo = Some(config);
        self
    }

    /// Adds Redis.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn with_redis(mut self, config: RedisConfig) -> Self {
        self.redis = Some(config);
        self
    }

    /// Sets the repository cache's options (it is on by default when Redis
    /// is configured).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn with_cache(mut self, options: reposmith_core::cache::CacheOptions) -> Self {
        self.cache = Some(options);
        self
    }

    /// Puts a near cache (L1) in front of the Redis cache.
    #[cfg(feature = "near-cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "near-cache")))]
    pub fn with_near_cache(mut self, options: reposmith_redis::cache::NearCacheOptions) -> Self {
        self.near_cache = Some(options);
        self
    }

    /// Stamps `created_at`, `updated_at` and soft deletes on every database
    /// backend with `clock`, whatever the backends' own settings say, and
    /// takes the cutoffs of `purge_deleted`/`purge_expired` from it. Tests
    /// pass a [`Clock::fixed`](reposmith_core::Clock::fixed) to assert
    /// those stamps exactly and move it with `advance`; a clone of the
    /// clock kept by the test moves the store's too.
    pub fn with_clock(mut self, clock: reposmith_core::Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Turns the repository cache off: every read goes to the database.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }
}

/// `REPOSMITH_CACHE` (`on`, the default, or `off`) and
/// `REPOSMITH_CACHE_PREFIX` (the key prefix, default `reposmith`).
#[cfg(feature = "redis")]
fn cache_from_env(env: &Env<'_>) -> Result<Option<reposmith_core::cache::CacheOptions>> {
    if env.flag("REPOSMITH_CACHE")? == Some(false) {
        return Ok(None);
    }
    let mut options = reposmith_core::cache::CacheOptions::default();
    if let Some(prefix) = env.get("REPOSMITH_CACHE_PREFIX") {
        options = options.prefix(prefix);
    }
    options.validate()?;
    Ok(Some(options))
}

/// The URL variables of the compiled-in backends, for the "nothing configured" message.
fn enabled_url_variables() -> String {
    let names: &[(&str, bool)] = &[
        ("DATABASE_URL", cfg!(feature = "postgres")),
        ("MONGODB_URL", cfg!(feature = "mongo")),
        ("REDIS_URL", cfg!(feature = "redis")),
    ];
    let enabled: Vec<&str> = names
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    match enabled.as_slice() {
        [] => "nothing: enable the postgres, mongo or redis feature".to_owned(),
        _ => enabled.join(" or "),
    }
}
