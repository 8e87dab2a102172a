//! One test's stores from setup to teardown: [`setup`] makes them and
//! connects the store, [`Session::teardown`] removes them after a pass,
//! [`Session::keep`] leaves them after a failure and says where they are.

use std::path::Path;

use reposmith_core::config::Env;
use reposmith_core::{Backend, ConnectionUrl};
use reposmith_mongo::MongoConfig;
use reposmith_postgres::PgConfig;
use reposmith_redis::RedisConfig;

use crate::args::TestArgs;
use crate::context::{StoreParts, TestContext, TestStore};
use crate::error::{Error, Result};
use crate::mongo;
use crate::names::{TestNames, fresh_id};
use crate::postgres::{PgAdmin, ensure_template};

/// A test's stores while it runs.
#[derive(Debug)]
pub struct Session<S> {
    store: S,
    names: TestNames,
    admin: Option<PgAdmin>,
    clock: reposmith_core::Clock,
}

/// The backends' settings from the environment, as the application reads them.
struct FromEnv {
    postgres: Option<PgConfig>,
    mongo: Option<MongoConfig>,
    redis: Option<RedisConfig>,
}

impl FromEnv {
    /// Each backend the test wants and the environment configures; a
    /// backend named in `backends(..)` but not configured is an error.
    fn read(args: &TestArgs) -> Result<FromEnv> {
        let env = Env::process();
        Ok(FromEnv {
            postgres: pick(
                args,
                Backend::Postgres,
                PgConfig::from_env(&env)?,
                "DATABASE_URL",
            )?,
            mongo: pick(
                args,
                Backend::Mongo,
                MongoConfig::from_env(&env)?,
                "MONGODB_URL",
            )?,
            redis: pick(
                args,
                Backend::Redis,
                RedisConfig::from_env(&env)?,
                "REDIS_URL",
            )?,
        })
    }
}

/// `config` if the test wants `backend`; an error if it names it but the
/// environment does not configure it.
fn pick<T>(
    args: &TestArgs,
    backend: Backend,
    config: Option<T>,
    variable: &'static str,
) -> Result<Option<T>> {
    match (args.wants(backend), config) {
        (Some(false), _) => Ok(None),
        (Some(true), None) => Err(Error::NotConfigured {
            backend: backend.name(),
            variable,
        }),
        (_, config) => Ok(config),
    }
}

/// Makes the test's stores (PostgreSQL database cloned from the migrated
/// template, MongoDB database with its migrations, Redis prefix), applies
/// the fixtures and connects `S` to them. What was made before a failure is
/// removed again.
pub async fn setup<S: TestStore>(args: &TestArgs) -> Result<Session<S>> {
    let env = FromEnv::read(args)?;
    let id = fresh_id();
    let dir = args.migrations_dir()?;
    let names = TestNames {
        test: args.name.to_owned(),
        postgres: env.postgres.as_ref().map(|_| id.clone()),
        mongo: env.mongo.as_ref().map(|_| id.clone()),
        redis: env.redis.as_ref().map(|_| id.clone()),
        id,
    };
    let mut admin = None;
    let postgres = match env.postgres {
        Some(config) => {
            let mut pg = PgAdmin::connect(&config).await?;
            let template = ensure_template(&mut pg, dir.as_deref()).await?;
            pg.clone_template(&names.id, &template.name).await?;
            admin = Some(pg);
            Some(test_pg_config(config, &names.id, args.pool_size)?)
        }
        None => None,
    };
    let mongo = env.mongo.map(|config| {
        let config = config.database(names.id.clone());
        match args.pool_size {
            Some(n) => config.max_pool_size(n),
            None => config,
        }
    });
    let clock = test_clock();
    let parts = StoreParts {
        postgres,
        mongo,
        redis: env.redis,
        key_prefix: names.id.clone(),
        clock: clock.clone(),
    };
    let store = match S::connect(parts).await {
        Ok(store) => store,
        Err(error) => {
            if let Some(mut admin) = admin {
                let _ = admin.drop_database(&names.id).await;
                let _ = admin.close().await;
            }
            return Err(error.into());
        }
    };
    let session = Session {
        store,
        names,
        admin,
        clock,
    };
    match session.prepare(args, dir.as_deref()).await {
        Ok(()) => Ok(session),
        Err(error) => {
            let _ = session.teardown().await;
            Err(error)
        }
    }
}

/// `config` pointed at database `database` (its primary, replica and
/// migration URLs alike), its pool capped at `pool_size`. Every other
/// setting the environment gave is kept.
fn test_pg_config(
    mut config: PgConfig,
    database: &str,
    pool_size: Option<u32>,
) -> Result<PgConfig> {
    let moved =
        |url: &ConnectionUrl| PgAdmin::url_of(url.expose(), database).map(ConnectionUrl::new);
    config.url = moved(&config.url)?;
    if let Some(owner) = &config.migration_url {
        config.migration_url = Some(moved(owner)?);
    }
    config.replicas.urls = config
        .replicas
        .urls
        .iter()
        .map(moved)
        .collect::<Result<_>>()?;
    if let Some(n) = pool_size {
        config = config.max_connections(n);
        config.min_connections = config.min_connections.min(n);
    }
    Ok(config)
}

impl<S: TestStore> Session<S> {
    /// MongoDB migrations, then the fixtures in the order given.
    async fn prepare(&self, args: &TestArgs, dir: Option<&Path>) -> Result<()> {
        let mongo = self.store.mongo().map(|m| m.database().clone());
        if let (Some(db), Some(dir)) = (&mongo, dir) {
            mongo::migrate(db, dir).await?;
        }
        for fixture in args.fixtures {
            let path = Path::new(args.manifest_dir).join(fixture);
            let missing = |backend: &str| Error::Fixture {
                path: path.clone(),
                reason: format!("the test has no {backend} database (see backends(..))"),
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("sql") => {
                    let admin = self.admin.as_ref().ok_or_else(|| missing("PostgreSQL"))?;
                    admin.apply_sql_fixture(&self.names.id, &path).await?;
                }
                Some("json") => {
                    let db = mongo.as_ref().ok_or_else(|| missing("MongoDB"))?;
                    mongo::apply_fixture(db, &path).await?;
                }
                _ => {
                    return Err(Error::Fixture {
                        path,
                        reason: "a fixture is a .sql (PostgreSQL) or .json (MongoDB) file".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The context handed to the test body.
    pub fn context(&self) -> TestContext<S> {
        TestContext::new(self.store.clone(), self.names.clone(), self.clock.clone())
    }

    /// The names of the test's stores.
    pub fn names(&self) -> &TestNames {
        &self.names
    }

    /// After a pass: drops the MongoDB database, deletes the Redis keys
    /// under the prefix, closes the store and drops the PostgreSQL database.
    pub async fn teardown(self) -> Result<()> {
        let mut first_error = None;
        if let Some(mongo) = self.store.mongo()
            && let Err(e) = mongo.database().drop().await
        {
            first_error.get_or_insert(Error::Backend(mongo.map_error(e)));
        }
        if let Some(redis) = self.store.redis()
            && let Err(e) = redis.delete_prefixed(&self.names.id).await
        {
            first_error.get_or_insert(Error::Backend(e));
        }
        self.store.close().await;
        if let Some(mut admin) = self.admin {
            if let Err(e) = admin.drop_database(&self.names.id).await {
                first_error.get_or_insert(e);
            }
            let _ = admin.close().await;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// After a failure: closes the store, keeps every store of the test and
    /// returns the message naming them and the cleanup command.
    pub async fn keep(self) -> String {
        self.store.close().await;
        if let Some(admin) = self.admin {
            let _ = admin.close().await;
        }
        kept_message(&self.names)
    }
}

/// What a failed test prints: where its stores are and how to remove them.
pub fn kept_message(names: &TestNames) -> String {
    let mut text = format!(
        "reposmith::test `{}` failed; its stores are kept for inspection:\n",
        names.test
    );
    if let Some(db) = &names.postgres {
        text += &format!("  PostgreSQL database: {db}\n");
    }
    if let Some(db) = &names.mongo {
        text += &format!("  MongoDB database:    {db}\n");
    }
    if let Some(prefix) = &names.redis {
        text +=
            &format!("  Redis key prefix:    {prefix} (keys `{prefix}:*` and `{{{prefix}:*`)\n");
    }
    text += &format!(
        "remove them with `{} --id {}` (or `reposmith::testing::remove(\"{}\")`); \
         every leftover older than an hour: `--older-than 1h`",
        crate::cleanup::COMMAND,
        names.id,
        names.id
    );
    text
}

/// A fixed clock at the current time, truncated to a whole millisecond
/// (MongoDB stores milliseconds; PostgreSQL keeps the same value exactly).
fn test_clock() -> reposmith_core::Clock {
    let now = chrono::Utc::now();
    let millis = chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    reposmith_core::Clock::fixed(millis)
}
