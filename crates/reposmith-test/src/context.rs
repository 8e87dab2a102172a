//! [`TestContext`]: what a `#[reposmith::test]` function receives, and the
//! [`TestStore`] seam through which the facade's `Store` is connected to a
//! test's own databases (this crate sits below the facade, so it names the
//! store type only through this trait).

use reposmith_core::Clock;
use reposmith_core::limit::LimiterOptions;
use reposmith_core::repository::BoxFuture;
use reposmith_mongo::{MongoBackend, MongoConfig};
use reposmith_postgres::PgConfig;
use reposmith_redis::queue::QueueOptions;
use reposmith_redis::{RedisBackend, RedisConfig};

use crate::names::TestNames;

/// The settings of one test's store: each backend's configuration from the
/// environment, pointed at the test's own database, and the Redis key
/// prefix its cache must use.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreParts {
    /// PostgreSQL, its URL naming the test's database.
    pub postgres: Option<PgConfig>,
    /// MongoDB, its database the test's.
    pub mongo: Option<MongoConfig>,
    /// Redis, as configured.
    pub redis: Option<RedisConfig>,
    /// The key prefix of the test's Redis keys (cache, limiter, queue).
    pub key_prefix: String,
    /// The clock every repository of the store stamps with: fixed at the
    /// test's start (a whole millisecond, which both backends store
    /// exactly) until the test moves it.
    pub clock: Clock,
}

/// A store a test can be handed: `reposmith::Store` implements it.
pub trait TestStore: Clone + Send + Sync + Sized + 'static {
    /// Connects the backends in `parts`; the repository cache (if any) must
    /// use `parts.key_prefix`, and every backend `parts.clock`.
    fn connect(parts: StoreParts) -> BoxFuture<'static, reposmith_core::Result<Self>>;
    /// The MongoDB backend, if connected (migrations and fixtures run on its database).
    fn mongo(&self) -> Option<&MongoBackend>;
    /// The Redis backend, if connected (the test's keys are deleted through it).
    fn redis(&self) -> Option<&RedisBackend>;
    /// Closes pools and clients.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// What a `#[reposmith::test]` function gets: a store connected to the
/// test's own PostgreSQL database, MongoDB database and Redis key prefix,
/// the names of those, and the options that keep the limiter and the queue
/// under the test's prefix.
#[derive(Debug, Clone)]
pub struct TestContext<S> {
    store: S,
    names: TestNames,
    clock: Clock,
}

impl<S> TestContext<S> {
    /// A context over `store` for the stores named in `names`, whose
    /// repositories stamp with `clock`.
    pub fn new(store: S, names: TestNames, clock: Clock) -> Self {
        TestContext {
            store,
            names,
            clock,
        }
    }

    /// The clock the store's repositories stamp `created_at`, `updated_at`
    /// and soft deletes with, and purges cut off by: fixed at the test's
    /// start, so timestamps can be asserted exactly; move it with
    /// [`Clock::advance`] or [`Clock::set`] (clones share the time).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The test's store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The test's store, by value.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The names of every store of this test.
    pub fn names(&self) -> &TestNames {
        &self.names
    }

    /// The test's PostgreSQL database, when it has one.
    pub fn database(&self) -> Option<&str> {
        self.names.postgres.as_deref()
    }

    /// The test's MongoDB database, when it has one.
    pub fn mongo_database(&self) -> Option<&str> {
        self.names.mongo.as_deref()
    }

    /// The Redis key prefix of this test: the store's cache uses it, and so
    /// do limiters and queues made with [`limiter_options`](Self::limiter_options)
    /// and [`queue_options`](Self::queue_options). Deleted after a pass.
    pub fn key_prefix(&self) -> &str {
        &self.names.id
    }

    /// Limiter options with the test's key prefix.
    pub fn limiter_options(&self) -> LimiterOptions {
        LimiterOptions::default().prefix(self.key_prefix())
    }

    /// Queue options with the test's key prefix.
    pub fn queue_options(&self) -> QueueOptions {
        QueueOptions::default().prefix(self.key_prefix())
    }
}

/// What a test function may take: the whole [`TestContext`], or the store
/// alone (the facade implements it for `Store`).
pub trait FromContext<S>: Sized {
    /// Takes what the test function wants out of `context`.
    fn from_context(context: TestContext<S>) -> Self;
}

impl<S> FromContext<S> for TestContext<S> {
    fn from_context(context: TestContext<S>) -> Self {
        context
    }
}

/// What a test function may return: `()` or `Result<(), E>`; an `Err` fails
/// the test (and keeps its stores) like a panic does.
pub trait TestOutcome {
    /// `Err` with the failure's text when the test failed.
    fn into_outcome(self) -> Result<(), String>;
}

impl TestOutcome for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Debug> TestOutcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:?}"))
    }
}
