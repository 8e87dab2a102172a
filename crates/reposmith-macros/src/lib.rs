//! `#[derive(Repository)]` and `#[derive(DbEnum)]` for reposmith.
//!
//! This crate is a thin shim: the pipelines live in `repository` and
//! `db_enum` and work on `proc_macro2` tokens so they are unit-tested
//! without the compiler. Use the derives through the `reposmith` crate,
//! whose documentation is the attribute reference.
//!
//! # Attributes
//!
//! On the struct: `table = "..."` (default: the snake_case plural of the
//! struct name), `schema = "..."`, `backend = "postgres" | "mongo"` (default:
//! both), `collection = "..."` (the MongoDB collection; default: the table),
//! `cache(ttl = "5m", negative_ttl = "30s")` (reads by id, unique finders and
//! `.cached(..)` queries go through the repository cache; `negative_ttl`,
//! optional, caches absent rows), `reads = "replica" | "primary"` (where
//! PostgreSQL pool reads go when the backend has read replicas; default: a
//! healthy replica; not on a MongoDB-only entity).
//!
//! On a field: `id` (`Uuid` or `ObjectId` generated client-side; `i64`,
//! `i32` or `i16` assigned by the database, or by you with `id(assigned)`;
//! `String` supplied by you), `column = "..."`, `unique` (plus a
//! `find_by_<field>` finder), `index` (plus `find_all_by_<field>`; GIN on
//! JSON fields), `json` (any `Serialize + DeserializeOwned` type as JSONB),
//! `version` (optimistic locking, `i64`), `created_at` / `updated_at`
//! (`DateTime<Utc>`, set by the repository), `soft_delete`
//! (`Option<DateTime<Utc>>`: `delete` sets it, reads skip such rows), `tenant`
//! (`String`, `Uuid` or an integer: the row's owner; repositories come from
//! `store.for_tenant(..)`), `skip` (not stored; `Default`
//! when read), `default = "..."` (a SQL default expression).

mod db_enum;
mod naming;
#[cfg(test)]
mod never_panics;
mod repository;
mod test_attr;

use proc_macro::TokenStream;

/// Derives `Entity` (schema, row mapping), typed column constants and the
/// `<Struct>Repository` finder trait. See the `reposmith` crate docs.
#[proc_macro_derive(Repository, attributes(repo))]
pub fn derive_repository(input: TokenStream) -> TokenStream {
    repository::derive(input.into()).into()
}

/// Stores a fieldless enum as text (snake_case variant names, or
/// `#[repo(rename = "...")]` per variant).
#[proc_macro_derive(DbEnum, attributes(repo))]
pub fn derive_db_enum(input: TokenStream) -> TokenStream {
    db_enum::derive(input.into()).into()
}

/// `#[reposmith::test]`: an async test with a PostgreSQL database, a MongoDB
/// database and a Redis key prefix of its own. Options and behaviour are
/// documented in the facade's `reposmith::testing` module.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    test_attr::attribute(args.into(), item.into()).into()
}
