//! Which backend stores an entity, as types: the markers [`Postgres`] and
//! [`Mongo`], the traits [`Pinned`] and [`StoredIn`] the derive implements,
//! and [`HomeBackend`], which lets [`Store::repo`] find an entity's backend
//! from its type.

use reposmith_core::{DataStore, Result};

pub use reposmith_core::home::{Mongo, Pinned, Postgres, StoredIn};

#[cfg(feature = "mongo")]
use crate::MongoBackend;
#[cfg(feature = "postgres")]
use crate::PgBackend;
use crate::Store;

/// The handle type of the backend that stores `E` ([`PgBackend`]
/// or [`MongoBackend`]).
pub type HandleOf<E> = <<E as Pinned>::Home as HomeBackend>::Handle;

/// The repository type of `E` on the backend that stores it.
pub type RepoOf<E> = <HandleOf<E> as DataStore>::Repo<E>;

/// The unit of work type of the backend that stores `E`.
pub type UnitOf<E> = <HandleOf<E> as DataStore>::Unit;

/// A backend a [`Store`] holds, as a type: [`home::Postgres`](Postgres)
/// and [`home::Mongo`](Mongo) when their features are on.
/// Lets `store.repo::<E>()` find the backend from the entity's type.
#[diagnostic::on_unimplemented(
    message = "reposmith was built without the backend `{Self}`",
    label = "this entity's backend is not compiled in",
    note = "turn on the `postgres` or `mongo` feature of the `reposmith` dependency"
)]
pub trait HomeBackend: 'static {
    /// The connected backend's handle.
    type Handle: DataStore<Home = Self>;

    /// The handle in `store`, or [`Error::Unavailable`](crate::Error::Unavailable) when not configured.
    fn handle(store: &Store) -> Result<&Self::Handle>;
}

#[cfg(feature = "postgres")]
impl HomeBackend for Postgres {
    type Handle = PgBackend;

    fn handle(store: &Store) -> Result<&PgBackend> {
        store.postgres()
    }
}

#[cfg(feature = "mongo")]
impl HomeBackend for Mongo {
    type Handle = MongoBackend;

    fn handle(store: &Store) -> Result<&MongoBackend> {
        store.mongo()
    }
}
