//! Snapshot against current model → the ordered SQL steps of one migration
//! and their inverses.
//!
//! Order of the up steps: schemas and the `vector` extension; foreign keys
//! that go away or change; indexes that go away or change; new tables;
//! column changes on kept tables (renames first, drops last); dropped
//! tables; new and changed indexes; new and changed foreign keys (after
//! every table exists, so entities may reference each other in any order).
//! The down file runs the inverse of every step in reverse order. A foreign
//! key added to an existing table is added `NOT VALID` and validated by a
//! migration file of its own (`Plan::validate`).
//!
//! A down file must run on the tables as they are when it runs, rows
//! included: what an up step destroyed comes back in a shape those rows
//! allow, and its comment says exactly what comes back (module `restore`).

use std::collections::BTreeSet;

use reposmith_postgres::quote_ident;

mod columns;
mod relations;
mod restore;

use columns::{ColumnChanges, column_changes, rename_index};

use crate::error::{Error, Result};
use crate::model::{Index, Snapshot, Table};

/// How `generate` may change the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Generate destructive steps (drop table or column, narrowing a type)
    /// instead of refusing them; they are marked `-- DESTRUCTIVE:` in the file.
    pub allow_destructive: bool,
    /// Build indexes on existing tables with `CREATE INDEX CONCURRENTLY`, each
    /// in a migration file of its own that runs outside a transaction.
    pub concurrently: bool,
}

/// One step: its SQL, its inverse, and whether it can lose data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Statements of the up migration.
    pub up: Vec<String>,
    /// Statements that undo `up`, in order.
    pub down: Vec<String>,
    /// Why the step can lose data, when it can.
    pub destructive: Option<String>,
    /// Why undoing the step (the down file) can lose data, when it can.
    pub down_destructive: Option<String>,
    /// A note written above the step in the up file.
    pub note: Option<String>,
    /// A note written above the step in the down file: what its revert
    /// brings back, or when it can fail.
    pub down_note: Option<String>,
}

/// The steps of one `generate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Steps of the main migration, run in one transaction.
    pub main: Vec<Step>,
    /// Concurrent index builds, one no-transaction migration each.
    pub concurrent: Vec<(String, Step)>,
    /// Foreign keys added `NOT VALID` to existing tables by `main`, each
    /// validated by a migration of its own, by name: validation scans the
    /// table under a lock that lets writes through, apart from the short
    /// lock that added the constraint.
    pub validate: Vec<(String, Step)>,
}

impl Plan {
    /// True when the schemas match the snapshot.
    pub fn is_empty(&self) -> bool {
        self.main.is_empty() && self.concurrent.is_empty() && self.validate.is_empty()
    }

    /// The reasons of every destructive step.
    pub fn destructive(&self) -> Vec<String> {
        self.main
            .iter()
            .chain(self.concurrent.iter().map(|(_, s)| s))
            .chain(self.validate.iter().map(|(_, s)| s))
            .filter_map(|s| s.destructive.clone())
            .collect()
    }
}

/// The steps from `old` to `new`; destructive ones are an error unless allowed.
pub fn plan(old: &Snapshot, new: &Snapshot, options: &Options) -> Result<Plan> {
    let mut planner = Planner::default();
    planner.prelude(old, new);
    let kept: Vec<(&Table, &Table)> = new
        .tables
        .iter()
        .filter_map(|t| Some((old.table(t.schema.as_deref(), &t.name)?, t)))
        .collect();
    let mut changes = Vec::new();
    for (before, after) in &kept {
        changes.push(column_changes(before, after)?);
    }
    for (before, after) in &kept {
        planner.main.extend(relations::dropped_keys(before, after));
    }
    for ((before, after), change) in kept.iter().zip(&changes) {
        planner.drop_indexes(before, after, change);
    }
    for table in &new.tables {
        if old.table(table.schema.as_deref(), &table.name).is_none() {
            planner.main.push(create_table(table));
        }
    }
    for ((_, after), change) in kept.iter().zip(&changes) {
        planner.main.extend(change.steps.iter().cloned());
        for (from, to) in &change.index_renames {
            planner.main.push(rename_index(after, from, to));
        }
    }
    for (before, after) in &kept {
        planner.main.extend(policy_change(before, after));
    }
    for table in &old.tables {
        if new.table(table.schema.as_deref(), &table.name).is_none() {
            planner.main.push(drop_table(table));
        }
    }
    for ((before, after), change) in kept.iter().zip(&changes) {
        planner.create_indexes(before, after, change, options);
    }
    let mut validate = Vec::new();
    for table in &new.tables {
        let before = old.table(table.schema.as_deref(), &table.name);
        let (steps, validations) = relations::added_keys(before, table);
        planner.main.extend(steps);
        validate.extend(validations);
    }
    let plan = Plan {
        main: planner.main,
        concurrent: planner.concurrent,
        validate,
    };
    let destructive = plan.destructive();
    if !options.allow_destructive && !destructive.is_empty() {
        return Err(Error::Destructive(destructive));
    }
    Ok(plan)
}

#[derive(Default)]
struct Planner {
    main: Vec<Step>,
    concurrent: Vec<(String, Step)>,
}

impl Planner {
    /// New database schemas, and the `vector` extension when the first vector column appears.
    fn prelude(&mut self, old: &Snapshot, new: &Snapshot) {
        let known: BTreeSet<&str> = old
            .tables
            .iter()
            .filter_map(|t| t.schema.as_deref())
            .collect();
        let wanted: BTreeSet<&str> = new
            .tables
            .iter()
            .filter_map(|t| t.schema.as_deref())
            .collect();
        for namespace in wanted.difference(&known) {
            self.main.push(Step {
                up: vec![format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    quote_ident(namespace)
                )],
                note: Some("the schema is left in place on revert".to_owned()),
                ..Step::default()
            });
        }
        if new.uses_vector() && !old.uses_vector() {
            self.main.push(Step {
                up: vec!["CREATE EXTENSION IF NOT EXISTS vector".to_owned()],
                note: Some("pgvector; left installed on revert".to_owned()),
                ..Step::default()
            });
        }
    }

    /// Drops indexes that are gone, changed, or on a column being rebuilt.
    fn drop_indexes(&mut self, before: &Table, after: &Table, change: &ColumnChanges) {
        for index in &before.indexes {
            let renamed = change
                .index_renames
                .iter()
                .any(|(from, _)| from.name == index.name);
            if renamed || index_kept(index, after, &change.rebuilt) {
                continue;
            }
            // Dropping a unique index loses no data, but the rows written
            // meanwhile may hold duplicates that make the down file fail.
            let down_destructive = index.unique.then(|| {
                format!(
                    "recreates unique index {} on {}: fails if duplicates were written meanwhile",
                    index.name,
                    before.display_name()
                )
            });
            self.main.push(Step {
                up: vec![drop_index(before, index, false)],
                down: vec![index.sql.clone()],
                down_destructive,
                ..Step::default()
            });
        }
    }

    /// Creates indexes that are new, changed, or on a rebuilt column.
    fn create_indexes(
        &mut self,
        before: &Table,
        after: &Table,
        change: &ColumnChanges,
        options: &Options,
    ) {
        for index in &after.indexes {
            let unchanged = before.index(&index.name).is_some_and(|old| {
                index_kept(old, after, &change.rebuilt) && old.same_definition(index)
            });
            let renamed = change
                .index_renames
                .iter()
                .any(|(_, to)| to.name == index.name);
            if unchanged || renamed {
                continue;
            }
            if options.concurrently {
                let sql = index
                    .sql
                    .replacen("INDEX IF NOT EXISTS", "INDEX CONCURRENTLY", 1);
                let step = Step {
                    up: vec![sql],
                    down: vec![drop_index(after, index, true)],
                    ..Step::default()
                };
                self.concurrent.push((index.name.clone(), step));
            } else {
                self.main.push(Step {
                    up: vec![index.sql.clone()],
                    down: vec![drop_index(after, index, false)],
                    ..Step::default()
                });
            }
        }
    }
}

/// True when `index` exists unchanged in `after` and none of its columns is rebuilt.
fn index_kept(index: &Index, after: &Table, rebuilt: &BTreeSet<String>) -> bool {
    let same = after
        .index(&index.name)
        .is_some_and(|new| new.same_definition(index));
    same && !index.columns.iter().any(|c| rebuilt.contains(c))
}

fn drop_index(table: &Table, index: &Index, concurrently: bool) -> String {
    let name = match &table.schema {
        Some(namespace) => format!("{}.{}", quote_ident(namespace), quote_ident(&index.name)),
        None => quote_ident(&index.name),
    };
    let how = if concurrently { "CONCURRENTLY " } else { "" };
    format!("DROP INDEX {how}IF EXISTS {name}")
}

/// Row-level security gained, lost or changed with the tenant field: the
/// policy replaced (its inverse puts the old one back).
fn policy_change(before: &Table, after: &Table) -> Option<Step> {
    if before.tenant_policy == after.tenant_policy {
        return None;
    }
    let table = after.qualified();
    let undo = reposmith_postgres::drop_tenant_policy_statements(&table);
    let up = match after.tenant_policy {
        Some(_) => after.policy_sql(),
        None => undo.clone(),
    };
    let down = match before.tenant_policy {
        Some(_) => before.policy_sql(),
        None => undo,
    };
    Some(Step {
        up,
        down,
        note: Some("row-level security of the #[repo(tenant)] field".to_owned()),
        ..Step::default()
    })
}

fn create_table(table: &Table) -> Step {
    let mut up = vec![table.create_sql()];
    up.extend(table.indexes.iter().map(|i| i.sql.clone()));
    up.extend(table.policy_sql());
    Step {
        up,
        down: vec![format!("DROP TABLE IF EXISTS {}", table.qualified())],
        down_destructive: Some(format!("drops table {} and its rows", table.display_name())),
        ..Step::default()
    }
}

/// The table comes back with every column and index as declared: it has no
/// rows, so nothing in its definition can fail.
fn drop_table(table: &Table) -> Step {
    let mut down = vec![table.create_sql()];
    down.extend(table.indexes.iter().map(|i| i.sql.clone()));
    down.extend(table.policy_sql());
    let back =
        "the table comes back empty, with its columns and indexes; its rows are not restored";
    Step {
        up: vec![format!("DROP TABLE {}", table.qualified())],
        down,
        destructive: Some(format!("drops table {} and its rows", table.display_name())),
        down_destructive: None,
        note: Some(format!("revert: {back}")),
        down_note: Some(back.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use reposmith_core::{ColumnDef, ColumnType, EntitySchema, IdStrategy};

    use super::*;

    static BEFORE: [ColumnDef; 2] = [
        ColumnDef::new("id", "id", ColumnType::Uuid, false)
            .with_role(reposmith_core::ColumnRole::Id),
        ColumnDef::new("at", "at", ColumnType::TimestampTz, false),
    ];
    static AFTER: [ColumnDef; 2] = [
        ColumnDef::new("id", "id", ColumnType::Uuid, false)
            .with_role(reposmith_core::ColumnRole::Id),
        ColumnDef::new("at", "at", ColumnType::Bool, false),
    ];
    static OLD: EntitySchema = EntitySchema::new("T", "t", &BEFORE, 0, IdStrategy::ClientUuid, &[]);
    static NEW: EntitySchema = EntitySchema::new("T", "t", &AFTER, 0, IdStrategy::ClientUuid, &[]);

    /// A type change Postgres cannot cast is refused with a message, even
    /// with destructive changes allowed.
    #[test]
    fn no_cast_is_refused() {
        let options = Options {
            allow_destructive: true,
            ..Options::default()
        };
        let err = plan(
            &Snapshot::from_schemas([&OLD]),
            &Snapshot::from_schemas([&NEW]),
            &options,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("t.at: Postgres has no cast from timestamptz to boolean"),
            "{err}"
        );
    }

    static OTHER_KEY: [ColumnDef; 2] = [
        ColumnDef::new("key", "key", ColumnType::Uuid, false)
            .with_role(reposmith_core::ColumnRole::Id),
        ColumnDef::new("at", "at", ColumnType::TimestampTz, false),
    ];
    static REKEYED: EntitySchema =
        EntitySchema::new("T", "t", &OTHER_KEY, 0, IdStrategy::ClientUuid, &[]);

    /// Another primary key column is refused, even with destructive changes
    /// allowed: the old key could not come back on revert (its values are
    /// gone), and the new one could not be added beside it.
    #[test]
    fn a_primary_key_change_is_refused() {
        let options = Options {
            allow_destructive: true,
            ..Options::default()
        };
        let err = plan(
            &Snapshot::from_schemas([&OLD]),
            &Snapshot::from_schemas([&REKEYED]),
            &options,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("t.key: changing the primary key or identity is not generated"),
            "{err}"
        );
    }

    /// Same schemas, no steps.
    #[test]
    fn nothing_to_do() {
        let snapshot = Snapshot::from_schemas([&OLD]);
        assert!(
            plan(&snapshot, &snapshot, &Options::default())
                .unwrap()
                .is_empty()
        );
    }
}
