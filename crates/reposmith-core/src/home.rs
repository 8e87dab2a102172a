//! Which backend stores an entity, as types, so generic code and the
//! `Store` can pick a repository without naming a database.
//!
//! [`PostgresEntity`] and [`MongoEntity`] say which backends *may* store an
//! entity (an entity without `#[repo(backend = ..)]` implements both).
//! [`StoredIn`] is the same fact with the backend as a type parameter, so a
//! trait generic over the backend ([`UnitOfWork`](crate::UnitOfWork),
//! [`DataStore`](crate::DataStore)) can bound its entities by it.
//! [`Pinned`] is implemented only by entities pinned to exactly one backend:
//! for them the backend is a property of the type.

use crate::entity::{Entity, MongoEntity, PostgresEntity};

/// The PostgreSQL backend, as a type (never constructed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postgres {}

/// The MongoDB backend, as a type (never constructed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mongo {}

/// `Self` is stored by the backend `H` ([`Postgres`] or [`Mongo`]).
///
/// Implemented for every [`PostgresEntity`] and every [`MongoEntity`]; never
/// by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not stored in the backend of this repository or unit of work",
    label = "stored in another backend",
    note = "`#[repo(backend = \"..\")]` on the entity decides where it is stored; a unit of work \
            gives repositories of entities of its own backend only"
)]
pub trait StoredIn<H>: Entity + sealed::Stored<H> {}

impl<E: PostgresEntity> StoredIn<Postgres> for E {}
impl<E: MongoEntity> StoredIn<Mongo> for E {}

/// Keeps [`StoredIn`] to its two blanket impls: a hand-written
/// `impl StoredIn<Mongo> for PgOnly {}` would hand a MongoDB unit the
/// repository of an entity whose schema MongoDB never stores.
mod sealed {
    use super::{Mongo, MongoEntity, Postgres, PostgresEntity};

    pub trait Stored<H> {}

    impl<E: PostgresEntity> Stored<Postgres> for E {}
    impl<E: MongoEntity> Stored<Mongo> for E {}
}

/// An entity pinned to one backend by `#[repo(backend = "postgres")]` or
/// `#[repo(backend = "mongo")]`: [`Pinned::Home`] names it, so
/// `store.repo::<E>()` needs no backend name.
///
/// An entity stored in both backends does not implement it; take its
/// repository from the backend handle (`store.postgres()?.repo::<E>()`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not pinned to one backend",
    label = "stored in both PostgreSQL and MongoDB",
    note = "add #[repo(backend = \"postgres\")] or #[repo(backend = \"mongo\")] to the entity, \
            or name the backend: `store.postgres()?.repo::<{Self}>()` / \
            `store.mongo()?.repo::<{Self}>()`"
)]
pub trait Pinned: Entity {
    /// The backend storing the entity: [`Postgres`] or [`Mongo`].
    type Home: 'static;
}
