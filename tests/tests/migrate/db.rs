//! A per-test Postgres schema (pgvector's types stay reachable: the search
//! path is `<schema>,public`) and a per-test migrations directory.

use std::path::{Path, PathBuf};

use reposmith::postgres::sqlx::{self, AssertSqlSafe, PgPool, postgres::PgPoolOptions};
use reposmith_migrate::{Connection, Options, Schemas};
use reposmith_tests::unique_name;

pub(crate) struct MigrateDb {
    /// Where migrations of this test run.
    pub(crate) db: Connection,
    /// Raw SQL on the test's schema.
    pub(crate) pool: PgPool,
    pub(crate) namespace: String,
    pub(crate) dir: PathBuf,
    url: String,
    admin: PgPool,
}

impl MigrateDb {
    pub(crate) async fn new() -> MigrateDb {
        let base = reposmith_tests::database_url();
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .unwrap();
        let namespace = unique_name("migrate");
        exec(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{namespace}%2Cpublic");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(&namespace);
        MigrateDb {
            db: Connection::new(url.clone()),
            url,
            pool,
            namespace,
            dir,
            admin,
        }
    }

    /// The URL of the test's schema.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Generates a migration named `name` for `schemas`.
    pub(crate) fn generate(&self, schemas: &Schemas, name: &str, options: Options) -> Vec<PathBuf> {
        reposmith_migrate::generate(schemas, &self.dir, name, &options)
            .unwrap()
            .files
    }

    pub(crate) async fn apply(&self) -> Vec<i64> {
        reposmith_migrate::apply(&self.dir, &self.db).await.unwrap()
    }

    /// The drift of the live schema against `schemas`; empty is none.
    pub(crate) async fn drift(&self, schemas: &Schemas) -> Vec<String> {
        reposmith_migrate::drift(&self.db, &schemas.snapshot())
            .await
            .unwrap()
    }

    pub(crate) async fn exec(&self, sql: &str) {
        exec(&self.pool, sql).await;
    }

    pub(crate) async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Every column, index and constraint of the schema's tables (the
    /// ledger excepted), sorted: equal dumps are equal catalogs.
    pub(crate) async fn catalog(&self) -> Vec<String> {
        sqlx::query_scalar(CATALOG)
            .bind(&self.namespace)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    pub(crate) async fn cleanup(self) {
        self.pool.close().await;
        exec(
            &self.admin,
            &format!("DROP SCHEMA \"{}\" CASCADE", self.namespace),
        )
        .await;
        self.admin.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const CATALOG: &str = "\
SELECT x FROM (
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
         || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
         || ' ' || a.attidentity::text || a.attgenerated::text AS x
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> '_sqlx_migrations'
    AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relname <> '_sqlx_migrations'
  UNION ALL
  SELECT 'constraint ' || c.relname || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relname <> '_sqlx_migrations'
) s ORDER BY x";

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap();
}

/// The text of a generated file.
pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
