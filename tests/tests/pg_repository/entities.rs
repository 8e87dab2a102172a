//! Entities written by hand the way `#[derive(Repository)]` expands them,
//! plus a per-test Postgres schema so parallel tests never share a table.

use chrono::{DateTime, Utc};
use reposmith::{PgBackend, PgConfig};
use reposmith_core::entity::codegen;
use reposmith_core::{
    Column, ColumnDef, ColumnRole, ColumnType, Entity, EntitySchema, FieldType, IdStrategy,
    IndexDef, IndexMethod, JsonColumn, Result, Value,
};
use reposmith_tests::{database_url, unique_name};
use uuid::Uuid;

/// Uuid id, version, timestamps, JSON, nullable, array and a unique field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Doc {
    pub(crate) id: Uuid,
    pub(crate) title: String,
    pub(crate) summary: Option<String>,
    pub(crate) rank: Option<i32>,
    pub(crate) tags: Vec<String>,
    pub(crate) meta: serde_json::Value,
    pub(crate) version: i64,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

static DOC_SCHEMA: EntitySchema = EntitySchema::new(
    "Doc",
    "docs",
    &[
        ColumnDef::new("id", "id", ColumnType::Uuid, false).with_role(ColumnRole::Id),
        ColumnDef::new("title", "title", ColumnType::Text, false).with_unique(),
        ColumnDef::new("summary", "summary", ColumnType::Text, true),
        ColumnDef::new("rank", "rank", ColumnType::Int, true),
        ColumnDef::new("tags", "tags", <Vec<String>>::COLUMN_TYPE, false),
        ColumnDef::new("meta", "meta", ColumnType::Json, false),
        ColumnDef::new("version", "version", ColumnType::BigInt, false)
            .with_role(ColumnRole::Version),
        ColumnDef::new("created_at", "created_at", ColumnType::TimestampTz, false)
            .with_role(ColumnRole::CreatedAt),
        ColumnDef::new("updated_at", "updated_at", ColumnType::TimestampTz, false)
            .with_role(ColumnRole::UpdatedAt),
    ],
    0,
    IdStrategy::ClientUuid,
    &[
        IndexDef::new("docs_title_key", &["title"], true, IndexMethod::BTree),
        IndexDef::new("docs_meta_idx", &["meta"], false, IndexMethod::Gin),
    ],
);

impl Doc {
    pub(crate) const TITLE: Column<Doc, String> = Column::at(1);
    pub(crate) const SUMMARY: Column<Doc, Option<String>> = Column::at(2);
    pub(crate) const RANK: Column<Doc, Option<i32>> = Column::at(3);
    pub(crate) const META: JsonColumn<Doc> = JsonColumn::at(5);
    pub(crate) const VERSION: Column<Doc, i64> = Column::at(6);

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

impl Entity for Doc {
    type Id = Uuid;
    const SCHEMA: &'static EntitySchema = &DOC_SCHEMA;

    fn id(&self) -> &Uuid {
        &self.id
    }

    fn to_values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.id.to_value(),
            self.title.to_value(),
            self.summary.to_value(),
            self.rank.to_value(),
            self.tags.to_value(),
            self.meta.to_value(),
            self.version.to_value(),
            self.created_at.to_value(),
            self.updated_at.to_value(),
        ])
    }

    fn from_values(values: Vec<Value>) -> Result<Self> {
        let mut v = values.into_iter();
        Ok(Doc {
            id: codegen::decode::<Self, _>(&mut v, "id")?,
            title: codegen::decode::<Self, _>(&mut v, "title")?,
            summary: codegen::decode::<Self, _>(&mut v, "summary")?,
            rank: codegen::decode::<Self, _>(&mut v, "rank")?,
            tags: codegen::decode::<Self, _>(&mut v, "tags")?,
            meta: codegen::decode::<Self, _>(&mut v, "meta")?,
            version: codegen::decode::<Self, _>(&mut v, "version")?,
            created_at: codegen::decode::<Self, _>(&mut v, "created_at")?,
            updated_at: codegen::decode::<Self, _>(&mut v, "updated_at")?,
        })
    }
}

/// An i64 identity id the database assigns; no arrays, so bulk inserts use UNNEST.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) score: Option<i32>,
}

static EVENT_SCHEMA: EntitySchema = EntitySchema::new(
    "Event",
    "events",
    &[
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("name", "name", ColumnType::Text, false).with_unique(),
        ColumnDef::new("score", "score", ColumnType::Int, true),
    ],
    0,
    IdStrategy::Identity,
    &[IndexDef::new(
        "events_name_key",
        &["name"],
        true,
        IndexMethod::BTree,
    )],
);

impl Event {
    pub(crate) const NAME: Column<Event, String> = Column::at(1);
    pub(crate) const SCORE: Column<Event, Option<i32>> = Column::at(2);
}

impl Entity for Event {
    type Id = i64;
    const SCHEMA: &'static EntitySchema = &EVENT_SCHEMA;

    fn id(&self) -> &i64 {
        &self.id
    }

    fn to_values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.id.to_value(),
            self.name.to_value(),
            self.score.to_value(),
        ])
    }

    fn from_values(values: Vec<Value>) -> Result<Self> {
        let mut v = values.into_iter();
        Ok(Event {
            id: codegen::decode::<Self, _>(&mut v, "id")?,
            name: codegen::decode::<Self, _>(&mut v, "name")?,
            score: codegen::decode::<Self, _>(&mut v, "score")?,
        })
    }
}

/// A String id the application assigns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Setting {
    pub(crate) key: String,
    pub(crate) value: String,
}

static SETTING_SCHEMA: EntitySchema = EntitySchema::new(
    "Setting",
    "settings",
    &[
        ColumnDef::new("key", "key", ColumnType::Text, false).with_role(ColumnRole::Id),
        ColumnDef::new("value", "value", ColumnType::Text, false),
    ],
    0,
    IdStrategy::Assigned,
    &[],
);

impl Entity for Setting {
    type Id = String;
    const SCHEMA: &'static EntitySchema = &SETTING_SCHEMA;

    fn id(&self) -> &String {
        &self.key
    }

    fn to_values(&self) -> Result<Vec<Value>> {
        Ok(vec![self.key.to_value(), self.value.to_value()])
    }

    fn from_values(values: Vec<Value>) -> Result<Self> {
        let mut v = values.into_iter();
        Ok(Setting {
            key: codegen::decode::<Self, _>(&mut v, "key")?,
            value: codegen::decode::<Self, _>(&mut v, "value")?,
        })
    }
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
