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
//!
//! Tenancy is the second: a repository of a `#[repo(tenant)]` entity taken
//! from a tenant's handle carries [`ScopeCondition::Tenant`] (the value
//! bound, never in the statement's text). One taken without a tenant
//! carries a *refusal* instead: every operation through it fails with
//! [`Error::InvalidInput`] before anything is
//! sent ([`RowScope::check`]), so a tenant's rows are never read or written
//! by a repository that forgot the tenant.

use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::filter::{CompareOp, Filter, FilterNode};
use crate::schema::EntitySchema;
use crate::tenant::{Tenant, no_tenant, stamp_tenant};
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
    /// The row belongs to the tenant: its `#[repo(tenant)]` column (at this
    /// position) equals `value` (of the column's type), a bound parameter.
    Tenant {
        /// Position of the tenant column.
        column: usize,
        /// The tenant, of the column's type.
        value: Value,
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
            ScopeCondition::Tenant { column, value } => FilterNode::Compare {
                column: *column,
                op: CompareOp::Eq,
                value: value.clone(),
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
    /// Why no statement may run under this scope (a tenant-scoped entity
    /// without a tenant, a tenant of the wrong type): the error
    /// [`RowScope::check`] returns.
    refused: Option<Refusal>,
}

/// The parts of the [`Error::InvalidInput`] a refused scope returns.
#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    entity: &'static str,
    field: String,
    reason: String,
}

impl Refusal {
    fn of(error: Error) -> Refusal {
        match error {
            Error::InvalidInput {
                entity,
                field,
                reason,
                ..
            } => Refusal {
                entity,
                field,
                reason,
            },
            other => Refusal {
                entity: "tenant",
                field: "tenant".to_owned(),
                reason: other.to_string(),
            },
        }
    }
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
    /// the entity has a `#[repo(soft_delete)]` column, else every row. For
    /// a `#[repo(tenant)]` entity this scope is refused (no tenant): use
    /// [`RowScope::of_tenant`].
    pub fn of(schema: &EntitySchema) -> Self {
        RowScope::of_tenant(schema, None)
    }

    /// The scope of an entity's repositories taken for `tenant`: the
    /// default scope, restricted to the tenant's rows when the entity is
    /// tenant-scoped (an entity without `#[repo(tenant)]` is shared by all
    /// tenants and ignores it). A tenant-scoped entity without a tenant, or
    /// with a tenant not of its column's type, gives a refused scope.
    pub fn of_tenant(schema: &EntitySchema, tenant: Option<&Tenant>) -> Self {
        let mut scope = RowScope::unscoped();
        if let Some((column, def)) = schema.tenant_column() {
            match tenant.map(|t| t.value_for(schema.entity, def)) {
                Some(Ok(value)) => scope
                    .conditions
                    .push(ScopeCondition::Tenant { column, value }),
                Some(Err(error)) => scope.refused = Some(Refusal::of(error)),
                None => scope.refused = Some(Refusal::of(no_tenant(schema))),
            }
        }
        scope.live(schema)
    }

    /// `Ok` when statements may run under this scope; else the typed error
    /// saying why not (a tenant-scoped entity's repository taken without a
    /// tenant). Every repository operation calls it before sending anything.
    pub fn check(&self) -> Result<()> {
        match &self.refused {
            None => Ok(()),
            Some(refusal) => Err(Error::invalid(
                refusal.entity,
                refusal.field.clone(),
                refusal.reason.clone(),
            )),
        }
    }

    /// The tenant condition's column and value, if the scope has one.
    pub fn tenant(&self) -> Option<(usize, &Value)> {
        self.conditions.iter().find_map(|c| match c {
            ScopeCondition::Tenant { column, value } => Some((*column, value)),
            ScopeCondition::Live { .. } => None,
        })
    }

    /// Prepares an entity's values for a write under this scope: checks
    /// the scope, then stamps the tenant (an unset tenant field gets it,
    /// another tenant is refused; see [`crate::tenant`]).
    pub fn stamp(&self, schema: &EntitySchema, values: &mut [Value]) -> Result<()> {
        self.check()?;
        match self.tenant() {
            Some((column, tenant)) => stamp_tenant(schema, column, tenant, values),
            None => Ok(()),
        }
    }

    /// `entities` with this scope's tenant stamped (see [`RowScope::stamp`]),
    /// for the bulk write paths that take entities; `None` when the scope
    /// stamps nothing (no copy is made). A refused row's error carries its index.
    pub fn stamp_entities<E: Entity>(&self, entities: &[E]) -> Result<Option<Vec<E>>> {
        self.check()?;
        if self.tenant().is_none() {
            return Ok(None);
        }
        let total = entities.len();
        let stamp = |entity: &E| -> Result<E> {
            let mut values = entity.to_values()?;
            self.stamp(E::SCHEMA, &mut values)?;
            E::from_values(values)
        };
        let row = |(i, entity)| stamp(entity).map_err(|e: Error| e.at_row(i, total));
        entities
            .iter()
            .enumerate()
            .map(row)
            .collect::<Result<_>>()
            .map(Some)
    }

    /// Whether this is the view a repository has when taken (its tenant's
    /// rows, live ones only when `schema` soft-deletes), as opposed to a
    /// wider view such as `.with_deleted()` or a refused scope: the only
    /// view whose reads the repository cache serves and fills, so rows of
    /// a wider view never land in entries default reads use.
    pub fn is_default_view(&self, schema: &EntitySchema) -> bool {
        if self.refused.is_some() {
            return false;
        }
        let mut default = RowScope::unscoped();
        if let Some((column, value)) = self.tenant() {
            let value = value.clone();
            default
                .conditions
                .push(ScopeCondition::Tenant { column, value });
        }
        default.live(schema) == *self
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
                    ScopeCondition::Tenant { column, .. } => (1, *column),
                })
                .collect(),
        )
    }

    /// The values the scope binds with the position of the column each is
    /// compared with, in the order its rendering uses them (after a fixed
    /// statement's own parameters): the tenant's, if any (a live condition
    /// is `IS NULL`).
    pub fn values(&self) -> Vec<(usize, Value)> {
        self.conditions
            .iter()
            .filter_map(|c| match c {
                ScopeCondition::Tenant { column, value } => Some((*column, value.clone())),
                ScopeCondition::Live { .. } => None,
            })
            .collect()
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

    static TENANT_COLUMNS: [ColumnDef; 3] = [
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("org", "org", ColumnType::Text, false).with_role(ColumnRole::Tenant),
        ColumnDef::new("gone", "gone", ColumnType::TimestampTz, true)
            .with_role(ColumnRole::SoftDelete),
    ];
    static TENANTED: EntitySchema =
        EntitySchema::new("N", "n", &TENANT_COLUMNS, 0, IdStrategy::Identity, &[]);

    #[test]
    fn a_tenants_default_view_is_its_live_rows_only() {
        let acme = Tenant::new("acme").unwrap();
        let scope = RowScope::of_tenant(&TENANTED, Some(&acme));
        assert!(scope.is_default_view(&TENANTED));
        assert!(!scope.clone().with_deleted().is_default_view(&TENANTED));
        assert!(
            !RowScope::of(&TENANTED).is_default_view(&TENANTED),
            "a refused scope is no view"
        );
    }

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
        assert!(live.is_default_view(&SOFT) && !all.is_default_view(&SOFT));
        assert!(RowScope::of(&HARD).is_default_view(&HARD));
        assert!(RowScope::of(&HARD).is_empty());
        assert_eq!(RowScope::of(&HARD).node(), FilterNode::All);
    }
}
