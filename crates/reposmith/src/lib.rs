#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cache;
mod config;
mod health;
pub mod home;
pub mod limit;
pub mod outbox;
mod store;

pub use config::Config;
pub use health::{Disabled, Health};
pub use reposmith_core::repository::BoxFuture;
/// The pgvector value types vector fields hold, re-exported so applications
/// need no direct `pgvector` dependency.
pub use reposmith_core::value::pgvector::{Bit, HalfVector, SparseVector, Vector};
pub use reposmith_core::{AssignOp, Assignment, Changes, Numeric};
pub use reposmith_core::{
    Backend, Backends, Capabilities, Column, ColumnDef, ColumnRole, ColumnType, ConnectionUrl,
    Cursor, DataStore, Entity, EntitySchema, EntityStream, Error, FieldType, Filter, Find,
    FindPage, FindQuery, IdStrategy, IndexDef, IndexMethod, JsonColumn, MAX_FILTER_DEPTH,
    MAX_FILTER_NODES, MongoEntity, ObjectId, OnDelete, Order, Page, Pinned, PostgresEntity,
    ReadPreference, Reference, Relation, Relations, Repository, Result, RetryPolicy, RowScope,
    StoredIn, UnitOfWork, Value,
};
/// Loading along relations: the children load's builder and the helpers
/// both backends share.
pub mod relation {
    pub use reposmith_core::relation::{KEY_BUDGET, LoadChildren};
}
/// The time repositories stamp `created_at`, `updated_at` and soft
/// deletes with ([`Config::with_clock`]; [`Clock::fixed`] in tests).
pub use reposmith_core::Clock;
pub use reposmith_core::{BatchRow, InsertReport, RowFailure};
pub use reposmith_core::{
    Distance, EmbedError, Embedder, Fusion, Scored, Search, SearchPage, SearchQuery, VectorIndex,
    VectorKind, VectorSearch, VectorSpec,
};
/// Tenants of `#[repo(tenant)]` entities ([`Store::for_tenant`]).
pub use reposmith_core::{IntoTenant, Tenant};
pub use reposmith_core::{
    Patch, PatchQuery, UpdateQuery, UpdateWhere, UpdateWhereReturning, Updated,
};
/// Background jobs: the [`Job`](job::Job) trait a job type implements, and
/// the settings a queue runs it with. Jobs reach a queue directly or
/// through a unit of work's outbox ([`UnitOfWork::enqueue`]).
pub mod job {
    pub use reposmith_core::job::{
        DEFAULT_MAX_PAYLOAD, Job, JobEnvelope, MAX_PRIORITY, StartAt, validate_name,
    };
}
/// The search builders' mode markers and knobs.
pub mod search {
    pub use reposmith_core::search::{
        ByText, ByVector, FusionMethod, HasVector, Hybrid, MAX_K, Pageable,
    };
}
pub use home::{HandleOf, HomeBackend, RepoOf, UnitOf};
#[doc = include_str!("../docs/db_enum.md")]
pub use reposmith_macros::DbEnum;
#[doc = include_str!("../docs/derive.md")]
pub use reposmith_macros::Repository;
pub use store::Store;

#[cfg(feature = "migrate")]
#[cfg_attr(docsrs, doc(cfg(feature = "migrate")))]
pub use reposmith_migrate as migrate;
#[cfg(feature = "test")]
#[cfg_attr(docsrs, doc(cfg(feature = "test")))]
#[doc = include_str!("../docs/testing.md")]
pub mod testing;
/// Runs an async test against a PostgreSQL database, a MongoDB database and
/// a Redis key prefix of its own; see [`testing`] for the options.
#[cfg(feature = "test")]
#[cfg_attr(docsrs, doc(cfg(feature = "test")))]
pub use reposmith_macros::test;
/// MongoDB-only items: server capabilities, the driver (`mongo::mongodb`),
/// commit settings.
#[cfg(feature = "mongo")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
pub use reposmith_mongo as mongo;
#[cfg(feature = "mongo")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
pub use reposmith_mongo::{
    MongoBackend, MongoConfig, MongoHealth, MongoRepository, MongoUnitOfWork,
};
/// PostgreSQL-only items: isolation levels, DDL, bulk loads
/// (`postgres::bulk_load`), the recall monitor (`postgres::recall`), the
/// pool and sqlx (`postgres::sqlx`) for raw SQL beside repositories.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use reposmith_postgres as postgres;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use reposmith_postgres::{PgBackend, PgConfig, PgHealth, PgRepository, PgUnitOfWork};
/// The Redis task queue: [`queue::Queue`] enqueues [`queue::Job`]s,
/// [`queue::Worker`] runs them (at least once, with leases, retries and a
/// dead-letter set), [`queue::QueueDestination`] carries jobs from the
/// transactional outbox onto their queues.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use reposmith_redis::queue;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use reposmith_redis::{RedisBackend, RedisConfig, RedisConnection, RedisHealth, redis};

/// Reading settings from the environment (re-exported from the core).
pub mod config_source {
    pub use reposmith_core::config::{Env, parse_duration};
}

/// The repository README's code blocks, compiled (never run) as doctests so
/// the front page cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// What most applications import: `use reposmith::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Changes, Config, Cursor, DataStore, DbEnum, Embedder, Entity, Error, Filter, HalfVector,
        Page, Relations, Repository, Result, RetryPolicy, Scored, SparseVector, Store, UnitOfWork,
        Vector, VectorSearch, job::Job, outbox::Event,
    };
}

/// What `#[derive(Repository)]` and `#[derive(DbEnum)]` expand to refer to.
/// Not a public API: names here change without notice.
#[doc(hidden)]
pub mod __private {
    pub use reposmith_core::cache::CacheSpec;
    pub use reposmith_core::entity::codegen::{
        IdOf, column_meta, decode, decode_json, encode_json, reference_in_mongo,
        reference_in_postgres, reference_key, schema_of,
    };
    pub use reposmith_core::home;
    pub use reposmith_core::value::DecodeError;
    pub use reposmith_core::{
        Backends, Column, ColumnDef, ColumnRole, ColumnType, Distance, Entity, EntitySchema,
        FieldType, IdStrategy, IndexDef, IndexMethod, JsonColumn, MongoEntity, OnDelete,
        PostgresEntity, ReadPreference, Reference, Relation, Repository, Result, Search, Value,
        VectorIndex, VectorKind, VectorSearch, VectorSpec,
    };
    pub use serde::Serialize;
    pub use serde::de::DeserializeOwned;

    /// The runtime `#[reposmith::test]` calls.
    #[cfg(feature = "test")]
    pub mod test {
        pub use crate::testing::{Flavor, Migrations, TestArgs, run};
        pub use reposmith_core::Backend;
    }

    /// The schema of an entity whose derive failed; never read, the crate does not compile.
    pub static FALLBACK_SCHEMA: EntitySchema =
        EntitySchema::new("", "", &[], 0, IdStrategy::Assigned, &[]);
}
