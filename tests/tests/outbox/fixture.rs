//! A Postgres schema of its own per test, first on the search path, with
//! the outbox tables: relays of parallel tests never see each other's rows.

use reposmith::PgBackend;
use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::{database_url, unique_name};

pub(crate) struct OutboxDb {
    pub(crate) pg: PgBackend,
    /// The URL whose connections use this schema (for child processes).
    pub(crate) url: String,
    admin: PgBackend,
    namespace: String,
}

impl OutboxDb {
    /// The schema with the `Doc` table and the outbox tables.
    pub(crate) async fn new() -> OutboxDb {
        let db = OutboxDb::without_tables().await;
        db.pg.create_outbox_tables().await.unwrap();
        db
    }

    /// The schema with the `Doc` table only.
    pub(crate) async fn without_tables() -> OutboxDb {
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("outbox");
        let create = format!("CREATE SCHEMA \"{namespace}\"");
        sqlx::raw_sql(AssertSqlSafe(create))
            .execute(admin.pool())
            .await
            .unwrap();
        let url = OutboxDb::url_for(&namespace);
        let pg = OutboxDb::connect(&url).await;
        pg.create_tables::<Doc>().await.unwrap();
        OutboxDb {
            pg,
            url,
            admin,
            namespace,
        }
    }

    /// A backend on the schema behind `url`.
    pub(crate) async fn connect(url: &str) -> PgBackend {
        PgBackend::connect(
            &reposmith_tests::pg_config(url).max_connections(reposmith_tests::pool_size(8)),
        )
        .await
        .unwrap()
    }

    fn url_for(namespace: &str) -> String {
        let url = database_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{namespace}")
    }

    /// Drops the schema.
    pub(crate) async fn cleanup(self) {
        self.pg.close().await;
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.namespace);
        sqlx::raw_sql(AssertSqlSafe(drop))
            .execute(self.admin.pool())
            .await
            .unwrap();
        self.admin.close().await;
    }
}
