//! The entities the Postgres repository tests store, derived with
//! `#[derive(Repository)]`, plus a per-test Postgres schema so parallel
//! tests never share a table.

use chrono::{DateTime, Utc};
use reposmith::{PgBackend, PgConfig, Repository};
use reposmith_tests::{database_url, unique_name};
use uuid::Uuid;

/// Uuid id, version, timestamps, JSON, nullable, array and a unique field.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "docs")]
pub(crate) struct Doc {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(unique)]
    pub(crate) title: String,
    pub(crate) summary: Option<String>,
    pub(crate) rank: Option<i32>,
    pub(crate) tags: Vec<String>,
    #[repo(json, index)]
    pub(crate) meta: serde_json::Value,
    #[repo(version)]
    pub(crate) version: i64,
    #[repo(created_at)]
    pub(crate) created_at: DateTime<Utc>,
    #[repo(updated_at)]
    pub(crate) updated_at: DateTime<Utc>,
}

impl Doc {
    /// A new document; the repository assigns id, version and timestamps.
    pub(crate) fn new(title: impl Into<String>) -> Self {
        Doc {
            id: Uuid::nil(),
            title: title.into(),
            summary: None,
            rank: None,
            tags: Vec::new(),
            meta: serde_json::json!({}),
            version: 0,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }
}

/// An i64 identity id the database assigns; no arrays, so bulk inserts use UNNEST.
#[derive(Debug, Clone, PartialEq, Repository)]
pub(crate) struct Event {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(unique)]
    pub(crate) name: String,
    pub(crate) score: Option<i32>,
}

/// A String id the application assigns.
#[derive(Debug, Clone, PartialEq, Repository)]
pub(crate) struct Setting {
    #[repo(id)]
    pub(crate) key: String,
    pub(crate) value: String,
}

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

    pub(crate) async fn with_pool(max_connections: u32) -> Db {
        let admin = PgBackend::connect(&PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("pgrepo");
        let create = format!("CREATE SCHEMA \"{namespace}\"");
        reposmith::sqlx::raw_sql(reposmith::sqlx::AssertSqlSafe(create))
            .execute(admin.pool())
            .await
            .unwrap();
        let url = database_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-c%20search_path%3D{namespace}");
        // The schema's name doubles as application_name, so pg_stat_activity
        // checks see only this test's connections.
        let config = PgConfig::new(url)
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
        reposmith::sqlx::raw_sql(reposmith::sqlx::AssertSqlSafe(drop))
            .execute(self.admin.pool())
            .await
            .unwrap();
        self.admin.close().await;
    }
}
