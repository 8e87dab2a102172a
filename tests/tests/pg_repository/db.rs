//! A per-test Postgres schema holding the conformance entities' tables: the
//! Postgres [`Fixture`] of the conformance suite.

use reposmith::{PgBackend, PgRepository};
use reposmith_tests::conformance::entities::{Doc, Event, Setting};
use reposmith_tests::conformance::{Capabilities, Fixture};
use reposmith_tests::{database_url, unique_name};

/// A Postgres schema of its own, put first on every pooled connection's
/// search path, with the three tables created from their entity schemas.
pub(crate) struct Db {
    pub(crate) pg: PgBackend,
    admin: PgBackend,
    namespace: String,
}

impl Db {
    pub(crate) async fn new() -> Db {
        Db::with_pool(10).await
    }

    /// With `max_connections` exactly, also in a pool-of-one run: for
    /// tests whose scenario is several connections at once (a unit held
    /// open while the pool reads, units racing each other).
    pub(crate) async fn with_connections(max_connections: u32) -> Db {
        Db::sized(max_connections).await
    }

    pub(crate) async fn with_pool(max_connections: u32) -> Db {
        Db::sized(reposmith_tests::pool_size(max_connections)).await
    }

    async fn sized(max_connections: u32) -> Db {
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("pgrepo");
        let create = format!("CREATE SCHEMA \"{namespace}\"");
        reposmith::postgres::sqlx::raw_sql(reposmith::postgres::sqlx::AssertSqlSafe(create))
            .execute(admin.pool())
            .await
            .unwrap();
        let url = database_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-c%20search_path%3D{namespace}");
        // The schema's name doubles as application_name, so pg_stat_activity
        // checks see only this test's connections.
        let config = reposmith_tests::pg_config(url)
            .max_connections(max_connections)
            .application_name(namespace.clone());
        let pg = PgBackend::connect(&config).await.unwrap();
        pg.create_tables::<Doc>().await.unwrap();
        pg.create_tables::<Event>().await.unwrap();
        pg.create_tables::<Setting>().await.unwrap();
        Db {
            pg,
            admin,
            namespace,
        }
    }

    /// The `application_name` of this test's pooled connections.
    pub(crate) fn application_name(&self) -> &str {
        &self.namespace
    }

    /// Drops the schema and its tables.
    pub(crate) async fn cleanup(self) {
        self.pg.close().await;
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.namespace);
        reposmith::postgres::sqlx::raw_sql(reposmith::postgres::sqlx::AssertSqlSafe(drop))
            .execute(self.admin.pool())
            .await
            .unwrap();
        self.admin.close().await;
    }
}

impl Fixture for Db {
    type Docs = PgRepository<Doc>;
    type Events = PgRepository<Event>;
    type Settings = PgRepository<Setting>;

    async fn setup() -> Self {
        Db::new().await
    }

    async fn teardown(self) {
        self.cleanup().await;
    }

    fn docs(&self) -> Self::Docs {
        self.pg.repo()
    }

    fn events(&self) -> Self::Events {
        self.pg.repo()
    }

    fn settings(&self) -> Self::Settings {
        self.pg.repo()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
}
