//! `reposmith::testing`: the runtime behind `#[reposmith::test]`, with the
//! facade's [`Store`] as the store a test gets. The user guide is
//! `docs/testing.md`, this module's documentation.

use reposmith_core::repository::BoxFuture;
pub use reposmith_test::cleanup::remove;
pub use reposmith_test::{
    CleanupOptions, CleanupReport, Error, Flavor, FromContext, Migrations, Session, StoreParts,
    TestArgs, TestNames, TestOutcome, TestStore, cleanup, names, run_async,
};

use crate::{Config, MongoBackend, RedisBackend, Store};

/// The clock a test's repositories stamp with ([`TestContext::clock`]).
pub use reposmith_core::Clock;
/// A deterministic embedder and seeded vector fixtures with exact
/// neighbours, for tests that search (see their own docs for the properties
/// they promise).
pub use reposmith_core::testing::{FixtureSpec, Neighbour, TestEmbedder, VectorFixture};

/// What a `#[reposmith::test]` function may take: its [`Store`] and the
/// names of the test's databases and key prefix, with helpers.
pub type TestContext = reposmith_test::TestContext<Store>;

/// Runs one test with a [`Store`] (what `#[reposmith::test]` expands to);
/// see [`reposmith_test::run`].
pub fn run<A, F, Fut>(args: TestArgs, body: F)
where
    A: FromContext<Store>,
    F: FnOnce(A) -> Fut,
    Fut: Future,
    Fut::Output: TestOutcome,
{
    reposmith_test::run::<Store, A, F, Fut>(args, body)
}

/// Sets up one test's stores by hand (a benchmark does); see
/// [`reposmith_test::setup`].
pub async fn setup(args: &TestArgs) -> Result<Session<Store>, Error> {
    reposmith_test::setup::<Store>(args).await
}

impl TestStore for Store {
    fn connect(parts: StoreParts) -> BoxFuture<'static, crate::Result<Self>> {
        Box::pin(async move {
            // The application's other settings (cache on or off and its
            // options) from the environment; the backends are the test's.
            let mut config = Config::from_env()?;
            config.postgres = parts.postgres;
            config.mongo = parts.mongo;
            config.redis = parts.redis;
            config.cache = config.cache.map(|c| c.prefix(parts.key_prefix));
            config.clock = Some(parts.clock);
            Store::connect(config).await
        })
    }

    fn mongo(&self) -> Option<&MongoBackend> {
        Store::mongo(self).ok()
    }

    fn redis(&self) -> Option<&RedisBackend> {
        Store::redis(self).ok()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(Store::close(self))
    }
}

impl FromContext<Store> for Store {
    fn from_context(context: TestContext) -> Self {
        context.into_store()
    }
}
