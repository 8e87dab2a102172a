//! MongoDB backend of reposmith: a driver client with deliberate defaults,
//! the server's capabilities probed at connect, error mapping onto
//! [`reposmith_core::Error`], and [`MongoRepository`], the
//! [`Repository`](reposmith_core::Repository) of an entity on a collection.
//!
//! Production targets MongoDB 7+ and Atlas; tests run against SecantusDB, a
//! MongoDB wire-protocol server. Whatever differs between servers is decided
//! from [`MongoCapabilities`], never from the server's name.
//!
//! How values are stored (and `None` as an explicit BSON null) is described
//! in the `codec` module; how SQL's NULL semantics are kept in filters, in
//! `render`; ordering and keyset pages, in `keyset`; identity ids, in
//! [`COUNTERS`]'s module; all-or-nothing bulk inserts, in `bulk`; the
//! document size limit, in `size`.
//! [`MongoRepository::insert_many_unordered`] stores every document it can
//! and reports the others one by one in an
//! [`InsertReport`](reposmith_core::InsertReport); see the `unordered` module.
//!
//! [`MongoRepository`] implements [`VectorSearch`](reposmith_core::VectorSearch)
//! (the derive's `search_<field>` methods): `$vectorSearch` where the server
//! has search, else an exact search computed server-side in an aggregation;
//! see the `search` module for the plans and the `vector_codec` module for
//! how vectors are stored. A `#[repo(ttl = "..")]` column gets a TTL index
//! (see [`MongoBackend::ensure_indexes`]).
//!
//! What a collection needs from a schema is computed once, for the backend
//! and for `reposmith-migrate`'s MongoDB migrations alike: [`index_specs`],
//! [`text_index`], [`search_index_definitions`] (named by
//! [`search_index_name`], compared by [`vector_similarity`]).
//!
//! [`MongoBackend::for_tenant`] gives a handle whose repositories of
//! `#[repo(tenant)]` entities add the tenant to every command's filter and
//! stamp it on every document written. MongoDB has no row-level security:
//! code reaching the collections through the driver directly sees every
//! tenant.
//!
//! [`MongoBackend::begin`] starts a [`MongoUnitOfWork`], a transaction on a
//! client session whose repositories run every command in it;
//! [`MongoBackend::transaction`] runs one again after a transient abort.
//!
//! [`MongoBackend::with_cache`] attaches the repository cache (Redis, built
//! by the facade's `Store`): entities declaring `#[repo(cache(..))]` are
//! read through it on the pool and invalidated after every write, after
//! COMMIT for a unit of work. MongoDB has no transactional outbox in
//! reposmith, so invalidations are not durable: one the cache server misses
//! leaves the old entry for other processes until its TTL (this process
//! reads the database meanwhile). See the `cache` module.

mod backend;
mod bulk;
mod cache;
mod capabilities;
mod codec;
mod config;
mod counter;
mod distance;
mod error;
mod executor;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod index_spec;
mod indexes;
mod json_filter;
mod keyset;
mod patch;
pub mod projection;
mod query;
mod render;
mod repository;
mod retry;
mod search;
mod search_index;
mod size;
mod store;
mod tenant;
mod tls;
mod unit;
mod unordered;
mod vector_codec;
mod write;

pub use backend::{MongoBackend, MongoHealth};
pub use capabilities::MongoCapabilities;
pub use config::{DEFAULT_DATABASE, MongoConfig};
pub use counter::COUNTERS;
pub use index_spec::{IndexKey, MongoIndex, index_specs, text_index};
pub use projection::MongoProjection;
pub use repository::MongoRepository;
pub use search_index::{search_index_definitions, search_index_name, vector_similarity};
pub use unit::{COMMIT_ATTEMPTS, MongoUnitOfWork};

/// The driver, for applications that need it beside repositories.
pub use mongodb;
