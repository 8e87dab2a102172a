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
