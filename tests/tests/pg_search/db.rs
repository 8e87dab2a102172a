//! A per-test Postgres schema for the search tests, with pgvector's types
//! (installed in `public`) on the search path.

use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::{PgBackend, PgConfig, PostgresEntity};
use reposmith_tests::unique_name;

pub(crate) struct SearchDb {
    pub(crate) pg: PgBackend,
    admin: PgBackend,
    namespace: String,
}

impl SearchDb {
    /// A fresh schema; `config`'s URL gains a search path of that schema then `public`.
    pub(crate) async fn new(config: PgConfig) -> SearchDb {
        let base = reposmith_tests::database_url();
        let admin = PgBackend::connect(&reposmith::PgConfig::new(base.clone()))
            .await
            .unwrap();
        let namespace = unique_name("search");
        run(&admin, format!("CREATE SCHEMA \"{namespace}\"")).await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{namespace}%2Cpublic");
        let mut config = config.application_name(namespace.clone());
        config.url = reposmith::ConnectionUrl::new(url);
        let pg = PgBackend::connect(&config).await.unwrap();
        SearchDb {
            pg,
            admin,
            namespace,
        }
    }

    pub(crate) async fn create<E: PostgresEntity>(&self) {
        self.pg.create_tables::<E>().await.unwrap();
    }

    /// Fresh statistics, so the planner sees the table's real size.
    pub(crate) async fn analyze(&self, table: &str) {
        run(
            &self.admin,
            format!("ANALYZE \"{}\".\"{table}\"", self.namespace),
        )
        .await;
    }

    /// Raw SQL in this test's schema, for checks the repository does not offer.
    pub(crate) async fn scalar_i64(&self, sql: &str) -> i64 {
        let sql = sql.replace("{schema}", &format!("\"{}\"", self.namespace));
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
            .fetch_one(self.admin.pool())
            .await
            .unwrap()
    }

    /// This test's pooled sessions left `idle in transaction`.
    pub(crate) async fn idle_in_transaction(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
        )
        .bind(&self.namespace)
        .fetch_one(self.admin.pool())
        .await
        .unwrap()
    }

    pub(crate) async fn cleanup(self) {
        self.pg.close().await;
        run(
            &self.admin,
            format!("DROP SCHEMA \"{}\" CASCADE", self.namespace),
        )
        .await;
        self.admin.close().await;
    }
}

async fn run(pg: &PgBackend, sql: String) {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(pg.pool())
        .await
        .unwrap();
}
