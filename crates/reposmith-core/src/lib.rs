//! Backend-free building blocks of reposmith.
//!
//! This crate knows no database driver. It holds what every backend and the
//! facade share: the [`Error`] contract, the [`Backend`] names, the
//! [`ConnectionUrl`] that keeps passwords out of every log line, the entity
//! [`schema`] the derive emits, stored [`Value`]s, typed [`filter`]s, and the
//! [`Repository`], [`UnitOfWork`] and [`DataStore`] traits every backend
//! implements, and the [`RetryPolicy`] of retried units.

pub mod backend;
mod breaker;
pub mod cache;
pub mod capability;
pub mod changes;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod embed;
pub mod entity;
pub mod error;
pub mod filter;
pub mod finite;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod home;
pub mod job;
pub mod json;
pub mod keyset;
pub mod limit;
pub mod object_id;
pub mod outbox;
pub mod relation;
pub mod report;
pub mod repository;
pub mod retry;
pub mod schema;
pub mod scope;
pub mod search;
pub mod stamp;
pub mod stream;
pub mod tenant;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod tls;
pub mod unit;
pub mod url;
pub mod value;
pub mod vector;

pub use backend::Backend;
pub use capability::Capabilities;
pub use changes::{AssignOp, Assignment, Changes, Numeric};
pub use clock::Clock;
pub use cursor::Cursor;
pub use embed::{EmbedError, Embedder};
pub use entity::{Entity, MongoEntity, PostgresEntity};
pub use error::{BatchRow, Error, Result};
pub use filter::{Column, Filter, JsonColumn, MAX_FILTER_DEPTH, MAX_FILTER_NODES, Order};
pub use home::{Pinned, StoredIn};
pub use object_id::ObjectId;
pub use relation::{Relation, Relations};
pub use report::{InsertReport, RowFailure};
pub use repository::{
    Find, FindPage, FindQuery, Page, Patch, PatchQuery, Repository, UpdateQuery, UpdateWhere,
    UpdateWhereReturning, Updated,
};
pub use retry::RetryPolicy;
pub use schema::{
    Backends, ColumnDef, ColumnRole, ColumnType, Distance, EntitySchema, FULL_TEXT_COLUMN,
    IdStrategy, IndexDef, IndexMethod, OnDelete, ReadPreference, Reference, VectorIndex,
    VectorKind, VectorSpec, foreign_key_name,
};
pub use scope::RowScope;
pub use search::{Fusion, Scored, Search, SearchKind, SearchPage, SearchQuery, VectorSearch};
pub use stream::EntityStream;
pub use tenant::{IntoTenant, Tenant};
pub use unit::{DataStore, UnitOfWork};
pub use url::ConnectionUrl;
pub use value::{FieldType, Value};
