//! Keyset pagination, decided once for every backend.
//!
//! A query's total order is the caller's sort keys followed by the id,
//! ascending, so two rows never tie and a page boundary is exact. Ascending
//! keys sort NULLs last and descending keys NULLs first, as
//! [`Column::asc`](crate::Column::asc) and [`Column::desc`](crate::Column::desc)
//! document.
//!
//! [`Keyset`] validates that order and writes and reads the [`Cursor`] of a
//! row; [`After`] describes "the rows strictly after this position" as data
//! (NULL placement and the `k1 ≻ v1 OR (k1 = v1 AND k2 ≻ v2) OR ...`
//! expansion already decided); [`fetch_page`] builds a
//! [`Page`](crate::Page) around a backend's fetch. A backend only renders
//! and executes what these say, so every backend pages the same way.

mod after;
mod page;
#[cfg(test)]
mod tests;

pub use after::{After, Condition, Disjunct, KeyTest};
pub use page::fetch_page;

use crate::cursor::Cursor;
use crate::entity::Entity;
use crate::filter::Order;
use crate::schema::{ColumnDef, ColumnType};
use crate::value::Value;
use crate::{Error, Result};

/// One key of a query's total order.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SortKey {
    /// Position of the column in the schema, and of its value in a row.
    pub index: usize,
    /// The column.
    pub column: &'static ColumnDef,
    /// Descending with NULLs first; ascending keys put NULLs last.
    pub descending: bool,
}

impl SortKey {
    /// Whether NULLs of this key sort before every value (descending keys).
    pub fn nulls_first(&self) -> bool {
        self.descending
    }
}

/// The total order of a query: the caller's sort keys, then the id ascending.
#[derive(Debug, Clone)]
pub struct Keyset {
    entity: &'static str,
    keys: Vec<SortKey>,
}

impl Keyset {
    /// The total order of `order` over `E`'s schema.
    ///
    /// Fails with an invalid-input error when a key is not a column of the
    /// schema or its type has no order (booleans, JSON, arrays, vectors).
    pub fn new<E: Entity>(order: &[Order<E>]) -> Result<Self> {
        let schema = E::SCHEMA;
        let mut keys = Vec::with_capacity(order.len() + 1);
        for o in order {
            let column = schema.columns.get(o.column()).ok_or_else(|| {
                Error::invalid(
                    schema.entity,
                    "order",
                    format!("no column at position {}", o.column()),
                )
            })?;
            if !column.ty.is_ordered() {
                return Err(Error::invalid(
                    schema.entity,
                    column.field,
                    "cannot sort by this type",
                ));
            }
            keys.push(SortKey {
                index: o.column(),
                column,
                descending: o.is_descending(),
            });
        }
        keys.push(SortKey {
            index: schema.id,
            column: schema.id_column(),
            descending: false,
        });
        Ok(Keyset {
            entity: schema.entity,
            keys,
        })
    }

    /// The keys in order, the id last.
    pub fn keys(&self) -> &[SortKey] {
        &self.keys
    }

    /// The cursor after a row whose schema-ordered values are `row`.
    pub fn cursor_of(&self, row: &[Value]) -> Cursor {
        let values: Vec<Value> = self.keys.iter().map(|k| row[k.index].clone()).collect();
        Cursor::encode(&values)
    }

    /// The rows after the position a client's `cursor` holds.
    ///
    /// The cursor is checked against the keys' types and nullability, so a
    /// tampered cursor is an invalid-input error, never a malformed query.
    pub fn after(&self, cursor: &Cursor) -> Result<After> {
        let types: Vec<ColumnType> = self.keys.iter().map(|k| k.column.ty).collect();
        let values = cursor.decode(self.entity, &types)?;
        for (key, value) in self.keys.iter().zip(&values) {
            if *value == Value::Null && !key.column.nullable {
                return Err(Error::invalid(
                    self.entity,
                    "cursor",
                    "a non-null sort key is null",
                ));
            }
        }
        Ok(After::new(self.keys.clone(), values))
    }
}
