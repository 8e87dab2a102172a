//! The entities an application migrates, listed explicitly by its own
//! migrate binary: no linker tricks (inventory, linkme), so it works on every
//! target and the list is reviewable in one place.

use reposmith_core::{Backend, EntitySchema, MongoEntity, PostgresEntity};

use crate::model::Snapshot;

/// The entity schemas to migrate, in the order their tables are created.
///
/// ```
/// # use reposmith_migrate::Schemas;
/// let schemas = Schemas::new(); // .add::<Document>().add::<Chunk>()
/// assert!(schemas.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    schemas: Vec<&'static EntitySchema>,
    mongo: Vec<&'static EntitySchema>,
}

impl Schemas {
    /// No entities yet.
    pub fn new() -> Schemas {
        Schemas::default()
    }

    /// Adds entity `E`'s table.
    pub fn add<E: PostgresEntity>(self) -> Schemas {
        self.add_schema(E::SCHEMA)
    }

    /// Adds a schema directly (tests, or schemas built by hand).
    ///
    /// # Panics
    ///
    /// When the schema is not stored in PostgreSQL (`Backends::Mongo`): a
    /// MongoDB-only entity must not get a table. [`add`](Self::add) makes
    /// that a compile error; this is its run-time twin for hand-built schemas.
    pub fn add_schema(mut self, schema: &'static EntitySchema) -> Schemas {
        assert!(
            schema.backends.includes(Backend::Postgres),
            "{} is stored in MongoDB only: register it with add_mongo",
            schema.entity
        );
        self.schemas.push(schema);
        self
    }

    /// Adds the transactional outbox's tables (`reposmith_outbox` and
    /// `reposmith_job_receipts`), which units of work write jobs and events
    /// into and the relay reads; needed as soon as the application calls
    /// `enqueue` or `publish` on a unit of work.
    pub fn with_outbox(self) -> Schemas {
        self.add_schema(&reposmith_core::outbox::SCHEMA)
            .add_schema(&reposmith_core::outbox::RECEIPTS_SCHEMA)
    }

    /// Adds entity `E`'s MongoDB collection (migrated from `<dir>/mongo/`).
    pub fn add_mongo<E: MongoEntity>(mut self) -> Schemas {
        self.mongo.push(E::SCHEMA);
        self
    }

    /// The registered MongoDB schemas.
    pub fn mongo_schemas(&self) -> impl Iterator<Item = &'static EntitySchema> + '_ {
        self.mongo.iter().copied()
    }

    /// The model of the registered MongoDB collections.
    #[cfg(feature = "mongo")]
    pub fn mongo_snapshot(&self) -> crate::mongo::MongoSnapshot {
        crate::mongo::MongoSnapshot::from_schemas(self.mongo_schemas())
    }

    /// Refuses two entities stored under one name (a table in one database
    /// schema, or one MongoDB collection): their migrations would fight
    /// over it, each rewriting the other's columns and indexes.
    pub fn check_distinct(&self) -> crate::Result<()> {
        let tables = self.schemas.iter().map(|s| {
            let name = match s.schema {
                Some(namespace) => format!("table {namespace}.{}", s.table),
                None => format!("table {}", s.table),
            };
            (name, s.entity)
        });
        let collections = self
            .mongo
            .iter()
            .map(|s| (format!("collection {}", s.collection), s.entity));
        let mut seen: Vec<(String, &str)> = Vec::new();
        for (name, entity) in tables.chain(collections) {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                return Err(crate::Error::Usage(format!(
                    "{first} and {entity} are both stored in {name}: give one another \
                     #[repo(table = \"..\")] or #[repo(collection = \"..\")]"
                )));
            }
            seen.push((name, entity));
        }
        Ok(())
    }

    /// True when no entity was added.
    pub fn is_empty(&self) -> bool {
        self.schemas.is_empty() && self.mongo.is_empty()
    }

    /// The registered schemas.
    pub fn iter(&self) -> impl Iterator<Item = &'static EntitySchema> + '_ {
        self.schemas.iter().copied()
    }

    /// The model of the registered schemas, as a snapshot would store it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::from_schemas(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use reposmith_core::{ColumnDef, ColumnRole, ColumnType, IdStrategy};

    use super::*;

    static ID: [ColumnDef; 1] =
        [ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id)];
    static DOCS: EntitySchema = EntitySchema::new("Doc", "docs", &ID, 0, IdStrategy::Identity, &[]);
    static OTHER_DOCS: EntitySchema =
        EntitySchema::new("OtherDoc", "docs", &ID, 0, IdStrategy::Identity, &[]);
    static RAG_DOCS: EntitySchema =
        EntitySchema::new("RagDoc", "docs", &ID, 0, IdStrategy::Identity, &[]).with_schema("rag");
    static LOGS: EntitySchema =
        EntitySchema::new("Log", "logs", &ID, 0, IdStrategy::Identity, &[]).with_collection("docs");

    #[test]
    fn two_entities_cannot_share_a_table_or_a_collection() {
        let same_table = Schemas::new().add_schema(&DOCS).add_schema(&OTHER_DOCS);
        let err = same_table.check_distinct().unwrap_err().to_string();
        assert!(
            err.contains("Doc and OtherDoc") && err.contains("table docs"),
            "{err}"
        );
        let other_namespace = Schemas::new().add_schema(&DOCS).add_schema(&RAG_DOCS);
        other_namespace.check_distinct().unwrap();
        let mut same_collection = Schemas::new();
        same_collection.mongo.extend([&DOCS, &LOGS]);
        let err = same_collection.check_distinct().unwrap_err().to_string();
        assert!(err.contains("collection docs"), "{err}");
        // One entity in both a table and a collection of the same name is fine.
        let mut both = Schemas::new().add_schema(&DOCS);
        both.mongo.push(&DOCS);
        both.check_distinct().unwrap();
    }
}
