//! Where a repository's statements run: the pool (one connection per
//! operation) or, inside a unit of work, the one connection holding its
//! transaction. Every operation asks the executor for a connection and runs
//! on `&mut PgConnection`, so the same code serves both.

use std::ops::{Deref, DerefMut};

use reposmith_core::{EntitySchema, Error, Result};
use sqlx::PgConnection;

use crate::PgBackend;
use crate::pool::PooledConnection;
use crate::unit::{UnitConnection, UnitShared};

/// The source of connections for a repository.
#[derive(Clone)]
pub(crate) enum Executor {
    /// A pooled connection per operation, returned when the operation ends.
    Pool(PgBackend),
    /// The connection of a unit of work, shared by its repositories.
    Unit(std::sync::Arc<UnitShared>),
}

/// A connection borrowed for one operation.
pub(crate) enum Held<'a> {
    /// From the pool; goes back when dropped if its last statement settled cleanly.
    Pooled(PooledConnection),
    /// The unit of work's connection, locked for this operation.
    Unit(UnitConnection<'a>),
}

impl Held<'_> {
    /// Records how a statement ended, so a pooled connection is reused only
    /// when it is ready for the next query; a unit's connection ends with the unit.
    pub(crate) fn settle<T>(&mut self, outcome: &sqlx::Result<T>) {
        if let Held::Pooled(connection) = self {
            connection.settle(outcome);
        }
    }
}

impl Deref for Held<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Held::Pooled(connection) => connection,
            Held::Unit(connection) => connection,
        }
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Held::Pooled(connection) => connection,
            Held::Unit(connection) => connection,
        }
    }
}

impl Executor {
    /// The backend, for error mapping.
    pub(crate) fn backend(&self) -> &PgBackend {
        match self {
            Executor::Pool(backend) => backend,
            Executor::Unit(shared) => shared.backend(),
        }
    }

    /// A connection for one operation.
    pub(crate) async fn acquire(&self) -> Result<Held<'_>> {
        match self {
            Executor::Pool(backend) => backend.acquire().await.map(Held::Pooled),
            Executor::Unit(shared) => shared.lock().await.map(Held::Unit),
        }
    }

    /// True when statements already run inside a transaction the caller owns.
    pub(crate) fn in_unit(&self) -> bool {
        matches!(self, Executor::Unit(_))
    }

    /// Maps a sqlx error of an operation on `schema`'s table.
    pub(crate) fn map_err(
        &self,
        schema: &'static EntitySchema,
    ) -> impl Fn(sqlx::Error) -> Error + '_ {
        move |err| self.backend().map_entity_error(err, schema)
    }
}
