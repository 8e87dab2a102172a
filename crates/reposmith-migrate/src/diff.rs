//! Snapshot against current model → the ordered SQL steps of one migration
//! and their inverses.
//!
//! Order of the up steps: schemas and the `vector` extension; indexes that go
//! away or change; new tables; column changes on kept tables (renames first,
//! drops last); dropped tables; new and changed indexes. The down file runs
//! the inverse of every step in reverse order.

use std::collections::BTreeSet;

use reposmith_postgres::quote_ident;

use crate::error::{Error, Result};
use crate::model::{Column, Index, Snapshot, Table};
use crate::types::{TypeChange, type_change};

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
}

/// The steps of one `generate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Steps of the main migration, run in one transaction.
    pub main: Vec<Step>,
    /// Concurrent index builds, one no-transaction migration each.
    pub concurrent: Vec<(String, Step)>,
}

impl Plan {
    /// True when the schemas match the snapshot.
    pub fn is_empty(&self) -> bool {
        self.main.is_empty() && self.concurrent.is_empty()
    }

    /// The reasons of every destructive step.
    pub fn destructive(&self) -> Vec<String> {
        self.main
            .iter()
            .chain(self.concurrent.iter().map(|(_, s)| s))
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
    for table in &old.tables {
        if new.table(table.schema.as_deref(), &table.name).is_none() {
            planner.main.push(drop_table(table));
        }
    }
    for ((before, after), change) in kept.iter().zip(&changes) {
        planner.create_indexes(before, after, change, options);
    }
    let plan = Plan {
        main: planner.main,
        concurrent: planner.concurrent,
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
            self.main.push(Step {
                up: vec![drop_index(before, index, false)],
                down: vec![index.sql.clone()],
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

fn create_table(table: &Table) -> Step {
    let mut up = vec![table.create_sql()];
    up.extend(table.indexes.iter().map(|i| i.sql.clone()));
    Step {
        up,
        down: vec![format!("DROP TABLE IF EXISTS {}", table.qualified())],
        down_destructive: Some(format!("drops table {} and its rows", table.display_name())),
        ..Step::default()
    }
}

fn drop_table(table: &Table) -> Step {
    let mut down = vec![table.create_sql()];
    down.extend(table.indexes.iter().map(|i| i.sql.clone()));
    Step {
        up: vec![format!("DROP TABLE {}", table.qualified())],
        down,
        destructive: Some(format!("drops table {} and its rows", table.display_name())),
        down_destructive: None,
        note: Some("revert recreates the table empty".to_owned()),
    }
}

/// What changes in the columns of a kept table.
struct ColumnChanges {
    /// Column steps, renames first, drops last.
    steps: Vec<Step>,
    /// Columns dropped and re-added: their indexes must be rebuilt.
    rebuilt: BTreeSet<String>,
    /// Indexes whose only change is a renamed column (and so their derived
    /// name): renamed in place instead of rebuilt.
    index_renames: Vec<(Index, Index)>,
}

fn column_changes(before: &Table, after: &Table) -> Result<ColumnChanges> {
    let mut steps = Vec::new();
    let mut rebuilt = BTreeSet::new();
    let mut matched = BTreeSet::new();
    let mut renames = Vec::new();
    let mut drops = Vec::new();
    for column in &after.columns {
        let previous = before.column(&column.name).or_else(|| {
            let old = column.renamed_from.as_deref()?;
            after.column(old).is_none().then(|| before.column(old))?
        });
        let Some(previous) = previous else {
            steps.push(add_column(after, column));
            continue;
        };
        matched.insert(previous.name.clone());
        if previous.name != column.name {
            steps.push(rename_column(after, previous, column));
            renames.push((previous.name.clone(), column.name.clone()));
        }
        if previous.generated.is_some() || column.generated.is_some() {
            if previous.generated != column.generated || previous.sql_type != column.sql_type {
                steps.push(regenerate(after, previous, column));
                rebuilt.insert(column.name.clone());
            }
            continue;
        }
        steps.extend(alter_column(after, previous, column)?);
    }
    for column in &before.columns {
        if !matched.contains(&column.name) {
            drops.push(drop_column(before, column));
        }
    }
    steps.extend(drops);
    let index_renames = index_renames(before, after, &renames, &rebuilt);
    Ok(ColumnChanges {
        steps,
        rebuilt,
        index_renames,
    })
}

/// Pairs of an index that goes away and one that appears whose definitions
/// are the same once renamed columns are followed.
fn index_renames(
    before: &Table,
    after: &Table,
    renames: &[(String, String)],
    rebuilt: &BTreeSet<String>,
) -> Vec<(Index, Index)> {
    if renames.is_empty() {
        return Vec::new();
    }
    let follow = |c: &String| {
        renames
            .iter()
            .find(|(from, _)| from == c)
            .map_or_else(|| c.clone(), |(_, to)| to.clone())
    };
    let mut pairs: Vec<(Index, Index)> = Vec::new();
    for old in before
        .indexes
        .iter()
        .filter(|i| after.index(&i.name).is_none())
    {
        let mut moved = old.clone();
        moved.columns = old.columns.iter().map(follow).collect();
        let candidate = after.indexes.iter().find(|new| {
            before.index(&new.name).is_none()
                && new.same_definition(&moved)
                && !new.columns.iter().any(|c| rebuilt.contains(c))
                && !pairs.iter().any(|(_, taken)| taken.name == new.name)
        });
        if let Some(new) = candidate {
            pairs.push((old.clone(), new.clone()));
        }
    }
    pairs
}

fn rename_index(table: &Table, from: &Index, to: &Index) -> Step {
    let qualified = |name: &str| match &table.schema {
        Some(namespace) => format!("{}.{}", quote_ident(namespace), quote_ident(name)),
        None => quote_ident(name),
    };
    let rename =
        |a: &str, b: &str| format!("ALTER INDEX {} RENAME TO {}", qualified(a), quote_ident(b));
    Step {
        up: vec![rename(&from.name, &to.name)],
        down: vec![rename(&to.name, &from.name)],
        ..Step::default()
    }
}

fn alter(table: &Table, action: &str) -> String {
    format!("ALTER TABLE {} {action}", table.qualified())
}

fn add_column(table: &Table, column: &Column) -> Step {
    let note = (!column.nullable && column.default.is_none() && column.generated.is_none())
        .then(|| "NOT NULL without a default: fails if the table has rows".to_owned());
    Step {
        up: vec![alter(table, &format!("ADD COLUMN {}", column.definition()))],
        down: vec![alter(
            table,
            &format!("DROP COLUMN IF EXISTS {}", quote_ident(&column.name)),
        )],
        destructive: None,
        down_destructive: column.generated.is_none().then(|| {
            format!(
                "drops column {}.{} and its data",
                table.display_name(),
                column.name
            )
        }),
        note,
    }
}

fn drop_column(table: &Table, column: &Column) -> Step {
    let derived = column.generated.is_some();
    Step {
        up: vec![alter(
            table,
            &format!("DROP COLUMN {}", quote_ident(&column.name)),
        )],
        down: vec![alter(table, &format!("ADD COLUMN {}", column.definition()))],
        destructive: (!derived).then(|| {
            format!(
                "drops column {}.{} and its data",
                table.display_name(),
                column.name
            )
        }),
        down_destructive: None,
        note: (!derived).then(|| "revert re-adds the column without its data".to_owned()),
    }
}

fn rename_column(table: &Table, from: &Column, to: &Column) -> Step {
    let rename = |a: &str, b: &str| {
        alter(
            table,
            &format!("RENAME COLUMN {} TO {}", quote_ident(a), quote_ident(b)),
        )
    };
    let mut step = Step {
        up: vec![rename(&from.name, &to.name)],
        down: vec![rename(&to.name, &from.name)],
        ..Step::default()
    };
    if from.enum_values.is_some() {
        // Postgres keeps an inline CHECK's generated name through a rename;
        // keep it matching the column so a later change finds it.
        let (old, new) = (check_name(table, &from.name), check_name(table, &to.name));
        let rename = |a: &str, b: &str| {
            alter(
                table,
                &format!("RENAME CONSTRAINT {} TO {}", quote_ident(a), quote_ident(b)),
            )
        };
        step.up.push(rename(&old, &new));
        step.down.insert(0, rename(&new, &old));
    }
    step
}

/// Drop and re-add a generated column whose expression changed (Postgres 16
/// cannot alter a generation expression); the data is derived, nothing is lost.
fn regenerate(table: &Table, before: &Column, after: &Column) -> Step {
    let drop = |c: &Column| {
        alter(
            table,
            &format!("DROP COLUMN IF EXISTS {}", quote_ident(&c.name)),
        )
    };
    let add = |c: &Column| alter(table, &format!("ADD COLUMN {}", c.definition()));
    let lossy = before.generated.is_none();
    Step {
        up: vec![drop(after), add(after)],
        down: vec![drop(after), add(before)],
        destructive: lossy.then(|| {
            format!(
                "replaces stored column {}.{} by a generated one",
                table.display_name(),
                after.name
            )
        }),
        down_destructive: before.generated.is_none().then(|| {
            format!(
                "replaces generated column {}.{} by an empty stored one",
                table.display_name(),
                after.name
            )
        }),
        note: None,
    }
}

/// The name Postgres gives an inline `CHECK` on one column.
fn check_name(table: &Table, column: &str) -> String {
    format!("{}_{column}_check", table.name)
}

/// Type, enum values, nullability and default of a column present before and after.
fn alter_column(table: &Table, before: &Column, after: &Column) -> Result<Vec<Step>> {
    if before.identity != after.identity || before.primary_key != after.primary_key {
        return Err(Error::Unsupported(format!(
            "{}.{}: changing the primary key or identity is not generated; write that migration by hand",
            table.display_name(),
            after.name
        )));
    }
    let col = quote_ident(&after.name);
    let mut steps = Vec::new();
    if before.sql_type != after.sql_type {
        steps.push(retype(table, before, after)?);
    }
    if before.enum_values != after.enum_values {
        steps.push(recheck(table, before, after));
    }
    if before.nullable != after.nullable {
        let set = |nullable: bool| {
            let what = if nullable {
                "DROP NOT NULL"
            } else {
                "SET NOT NULL"
            };
            alter(table, &format!("ALTER COLUMN {col} {what}"))
        };
        steps.push(Step {
            up: vec![set(after.nullable)],
            down: vec![set(before.nullable)],
            note: (!after.nullable).then(|| "fails if the column holds NULLs".to_owned()),
            ..Step::default()
        });
    }
    if before.default != after.default {
        let set = |default: &Option<String>| match default {
            Some(sql) => alter(table, &format!("ALTER COLUMN {col} SET DEFAULT {sql}")),
            None => alter(table, &format!("ALTER COLUMN {col} DROP DEFAULT")),
        };
        steps.push(Step {
            up: vec![set(&after.default)],
            down: vec![set(&before.default)],
            ..Step::default()
        });
    }
    Ok(steps)
}

fn retype(table: &Table, before: &Column, after: &Column) -> Result<Step> {
    let change = type_change(&before.sql_type, &after.sql_type);
    if change == TypeChange::NoCast {
        return Err(Error::Unsupported(format!(
            "{}.{}: Postgres has no cast from {} to {}; write that migration by hand",
            table.display_name(),
            after.name,
            before.sql_type,
            after.sql_type
        )));
    }
    let back = type_change(&after.sql_type, &before.sql_type);
    let col = quote_ident(&after.name);
    let to = |ty: &str| {
        alter(
            table,
            &format!("ALTER COLUMN {col} TYPE {ty} USING {col}::{ty}"),
        )
    };
    Ok(Step {
        up: vec![to(&after.sql_type)],
        down: vec![to(&before.sql_type)],
        destructive: (change == TypeChange::Narrowing).then(|| {
            format!(
                "narrows {}.{} from {} to {} (values may be lost or the cast may fail)",
                table.display_name(),
                after.name,
                before.sql_type,
                after.sql_type
            )
        }),
        down_destructive: (back != TypeChange::Widening).then(|| {
            format!(
                "narrows {}.{} back from {} to {}",
                table.display_name(),
                after.name,
                after.sql_type,
                before.sql_type
            )
        }),
        note: None,
    })
}

/// Replaces an enum column's `CHECK`; dropping variants is narrowing.
fn recheck(table: &Table, before: &Column, after: &Column) -> Step {
    let name = quote_ident(&check_name(table, &after.name));
    let set = |column: &Column| {
        let mut sql = vec![alter(table, &format!("DROP CONSTRAINT IF EXISTS {name}"))];
        if let Some(check) = column.check_sql() {
            sql.push(alter(table, &format!("ADD CONSTRAINT {name} {check}")));
        }
        sql
    };
    let old: BTreeSet<&String> = before.enum_values.iter().flatten().collect();
    let new: BTreeSet<&String> = after.enum_values.iter().flatten().collect();
    let narrowing =
        after.enum_values.is_some() && (before.enum_values.is_none() || !old.is_subset(&new));
    Step {
        up: set(after),
        down: set(before),
        destructive: narrowing.then(|| {
            format!(
                "restricts {}.{} to the values {:?} (rows with others make it fail)",
                table.display_name(),
                after.name,
                new
            )
        }),
        down_destructive: (!narrowing).then(|| {
            format!(
                "restricts {}.{} back to the values {:?}",
                table.display_name(),
                after.name,
                old
            )
        }),
        note: None,
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
