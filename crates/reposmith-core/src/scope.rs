//! The row scope: the implicit conditions a repository ANDs into every read,
//! update and delete, whatever filter the caller gives.
//!
//! Soft delete is the first condition: a repository of an entity with a
//! `#[repo(soft_delete)]` column sees live rows only, unless it is the
//! `.with_deleted()` view. The scope is data, backend-neutral: each backend
//! renders it the way it renders filters (PostgreSQL SQL with every value
//! bound, MongoDB BSON), through one function per backend, so every path
//! applies the same conditions. Statements of fixed shape are cached per
//! [`ScopeShape`], the scope without its values, so scoped hot paths stay
//! prepared statements.

use crate::entity::Entity;
use crate::filter::{Filter, FilterNode};
use crate::schema::EntitySchema;
use crate::value::Value;

/// One implicit condition of a [`RowScope`].
///
/// Deliberately exhaustive: a condition added here must be rendered by
/// every backend's scope function before anything compiles.
#[derive(Debug, Clone, PartialEq)]
pub enum ScopeCondition {
    /// The row is live: its `#[repo(soft_delete)]` column (at this position
    /// in the schema's columns) is NULL.
    Live {
        /// Position of the soft-delete column.
        column: usize,
    },
}

impl ScopeCondition {
    /// The condition as a filter node.
    fn node(&self) -> FilterNode {
        match self {
            ScopeCondition::Live { column } => FilterNode::IsNull {
                column: *column,
                negated: false,
            },
        }
    }
}

/// What a repository restricts every statement to, besides the caller's filter.
///
/// ```
/// # use reposmith_core::{RowScope, EntitySchema, ColumnDef, ColumnType, ColumnRole, IdStrategy};
/// static COLUMNS: [ColumnDef; 2] = [
///     ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
///     ColumnDef::new("deleted_at", "deleted_at", ColumnType::TimestampTz, true)
///         .with_role(ColumnRole::SoftDelete),
/// ];
/// static SCHEMA: EntitySchema =
///     EntitySchema::new("Doc", "docs", &COLUMNS, 0, IdStrategy::Identity, &[]);
/// let live = RowScope::of(&SCHEMA);
/// assert!(!live.includes_deleted());
/// assert!(live.clone().with_deleted().includes_deleted());
/// assert_ne!(live.shape(), live.clone().with_deleted().shape());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowScope {
    conditions: Vec<ScopeCondition>,
}

/// A [`RowScope`] without its values: what decides the text of a statement.
/// Backends cache fixed-shape statements per (entity, shape).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ScopeShape(Vec<(u8, usize)>);

impl RowScope {
    /// No implicit condition: every row.
    pub fn unscoped() -> Self {
        RowScope::default()
    }

    /// The default scope of an entity's repositories: live rows only when
    /// the entity has a `#[repo(soft_delete)]` column, else every row.
    pub fn of(schema: &EntitySchema) -> Self {
        RowScope::unscoped().live(schema)
    }

    /// This scope, also matching soft-deleted rows (the `.with_deleted()` view).
    pub fn with_deleted(mut self) -> Self {
        self.conditions
            .retain(|c| !matches!(c, ScopeCondition::Live { .. }));
        self
    }

    /// This scope, matching live rows only (when `schema` soft-deletes):
    /// what a soft delete itself targets whatever the view.
    pub fn live(mut self, schema: &EntitySchema) -> Self {
        if let Some((column, _)) = schema.soft_delete_column()
            && self.includes_deleted()
        {
            self.conditions.push(ScopeCondition::Live { column });
        }
        self
    }

    /// Whether soft-deleted rows are in scope (always, for an entity
    /// without soft delete).
    pub fn includes_deleted(&self) -> bool {
        !self
            .conditions
            .iter()
            .any(|c| matches!(c, ScopeCondition::Live { .. }))
    }

    /// The conditions, in the order backends render them.
    pub fn conditions(&self) -> &[ScopeCondition] {
        &self.conditions
    }

    /// Whether the scope has no condition.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// The scope's shape: its conditions without their values.
    pub fn shape(&self) -> ScopeShape {
        ScopeShape(
            self.conditions
                .iter()
                .map(|c| match c {
                    ScopeCondition::Live { column } => (0, *column),
                })
                .collect(),
        )
    }

    /// The values the scope binds with the position of the column each is
    /// compared with, in the order its rendering uses them (after a fixed
    /// statement's own parameters). None so far: a live condition is
    /// `IS NULL`.
    pub fn values(&self) -> Vec<(usize, Value)> {
        Vec::new()
    }

    /// The scope as a filter node; [`FilterNode::All`] when empty.
    pub fn node(&self) -> FilterNode {
        match self.conditions.as_slice() {
            [] => FilterNode::All,
            [one] => one.node(),
            many => FilterNode::And(many.iter().map(ScopeCondition::node).collect()),
        }
    }

    /// `filter` restricted to this scope: the filter every filtered path of
    /// a repository renders.
    pub fn apply<E: Entity>(&self, filter: Filter<E>) -> Filter<E> {
        if self.is_empty() {
            return filter;
        }
        filter.and(Filter::from_node(self.node()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnDef, ColumnRole, ColumnType, IdStrategy};

    static COLUMNS: [ColumnDef; 2] = [
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("gone", "gone", ColumnType::TimestampTz, true)
            .with_role(ColumnRole::SoftDelete),
    ];
    static ID: [ColumnDef; 1] =
        [ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id)];
    static SOFT: EntitySchema = EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::Identity, &[]);
    static HARD: EntitySchema = EntitySchema::new("H", "h", &ID, 0, IdStrategy::Identity, &[]);

    #[test]
    fn soft_deleting_entities_scope_to_live_rows_unless_with_deleted() {
        let live = RowScope::of(&SOFT);
        assert_eq!(
            live.node(),
            FilterNode::IsNull {
                column: 1,
                negated: false
            }
        );
        let all = live.clone().with_deleted();
        assert!(all.is_empty() && all.includes_deleted());
        assert_eq!(
            all.clone().live(&SOFT),
            live,
            "live() restores the condition"
        );
        assert_eq!(live.clone().live(&SOFT), live, "never twice");
        assert!(RowScope::of(&HARD).is_empty());
        assert_eq!(RowScope::of(&HARD).node(), FilterNode::All);
    }
}
