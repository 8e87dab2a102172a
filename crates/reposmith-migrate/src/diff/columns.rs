//! Column steps of a kept table: renames (and the indexes that follow
//! them), added and dropped columns, type changes with `USING` casts, enum
//! `CHECK`s, nullability, defaults, and the regenerated full-text column.

use std::collections::BTreeSet;

use reposmith_postgres::quote_ident;

use super::Step;
use super::restore::{re_add_column, restore_not_null};
use crate::error::{Error, Result};
use crate::model::{Column, Index, Table};
use crate::types::{TypeChange, type_change};

/// What changes in the columns of a kept table.
pub(super) struct ColumnChanges {
    /// Column steps, renames first, drops last.
    pub(super) steps: Vec<Step>,
    /// Columns dropped and re-added: their indexes must be rebuilt.
    pub(super) rebuilt: BTreeSet<String>,
    /// Indexes whose only change is a renamed column (and so their derived
    /// name): renamed in place instead of rebuilt.
    pub(super) index_renames: Vec<(Index, Index)>,
}

pub(super) fn column_changes(before: &Table, after: &Table) -> Result<ColumnChanges> {
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
            if column.primary_key {
                return Err(key_change(after, column));
            }
            steps.push(add_column(after, column));
            continue;
        };
        matched.insert(previous.name.clone());
        if previous.name != column.name {
            if column.enum_values.is_some() {
                guessable_check(after, &previous.name)?;
            }
            steps.push(rename_column(after, previous, column));
            renames.push((previous.name.clone(), column.name.clone()));
        }
        if previous.generated.is_some() || column.generated.is_some() {
            if previous.generated != column.generated || previous.sql_type != column.sql_type {
                steps.push(regenerate(before, after, previous, column));
                rebuilt.insert(column.name.clone());
            }
            continue;
        }
        steps.extend(alter_column(after, previous, column)?);
    }
    // Generated columns go first: a stored generated column depends on its
    // sources, which cannot be dropped before it (the down file adds them
    // back in the reverse order, sources first).
    let generated_first = before
        .columns
        .iter()
        .filter(|c| c.generated.is_some())
        .chain(before.columns.iter().filter(|c| c.generated.is_none()));
    for column in generated_first {
        if matched.contains(&column.name) {
            continue;
        }
        // The revert could not bring a key back: its values are gone.
        if column.primary_key {
            return Err(key_change(before, column));
        }
        drops.push(drop_column(before, column));
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

pub(super) fn rename_index(table: &Table, from: &Index, to: &Index) -> Step {
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

pub(super) fn alter(table: &Table, action: &str) -> String {
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
        down_note: None,
    }
}

/// Drops a column of `table` (the table before the drop); the down file
/// re-adds it in a shape the rows present then allow ([`re_add_column`]).
fn drop_column(table: &Table, column: &Column) -> Step {
    let derived = column.generated.is_some();
    let (down, back) = re_add_column(table, column);
    Step {
        up: vec![alter(
            table,
            &format!("DROP COLUMN {}", quote_ident(&column.name)),
        )],
        down,
        destructive: (!derived).then(|| {
            format!(
                "drops column {}.{} and its data",
                table.display_name(),
                column.name
            )
        }),
        down_destructive: None,
        note: (!derived).then(|| format!("revert: {back}")),
        down_note: (!derived).then_some(back),
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
/// cannot alter a generation expression); the data is derived, nothing is
/// lost. (`old` and `table` are the table before and after: one name.)
fn regenerate(old: &Table, table: &Table, before: &Column, after: &Column) -> Step {
    let drop = |c: &Column| {
        alter(
            table,
            &format!("DROP COLUMN IF EXISTS {}", quote_ident(&c.name)),
        )
    };
    let add = |c: &Column| alter(table, &format!("ADD COLUMN {}", c.definition()));
    let lossy = before.generated.is_none();
    // A stored column's values are gone: it comes back as a dropped one does.
    let (back, down_note) = match lossy {
        true => {
            let (sql, note) = re_add_column(old, before);
            (sql, Some(note))
        }
        false => (vec![add(before)], None),
    };
    let mut down = vec![drop(after)];
    down.extend(back);
    Step {
        up: vec![drop(after), add(after)],
        down,
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
        down_note,
    }
}

/// The name Postgres gives an inline `CHECK` on one column.
fn check_name(table: &Table, column: &str) -> String {
    format!("{}_{column}_check", table.name)
}

/// Postgres names an inline CHECK `<table>_<column>_check` only when that fits
/// in 63 bytes; a longer one is truncated by rules this tool does not guess,
/// so changing such a constraint is refused rather than silently missed.
fn guessable_check(table: &Table, column: &str) -> Result<()> {
    let name = check_name(table, column);
    if name.len() <= 63 {
        return Ok(());
    }
    Err(Error::Unsupported(format!(
        "{}.{column}: its CHECK constraint's name `{name}` is longer than 63 bytes and was \
         truncated by Postgres; look the name up in pg_constraint and write this migration by hand",
        table.display_name()
    )))
}

/// A primary key or identity that changes (another key column, one dropped
/// or added, identity switched): refused, written by hand.
fn key_change(table: &Table, column: &Column) -> Error {
    Error::Unsupported(format!(
        "{}.{}: changing the primary key or identity is not generated; write that migration by hand",
        table.display_name(),
        column.name
    ))
}

/// Type, enum values, nullability and default of a column present before and after.
fn alter_column(table: &Table, before: &Column, after: &Column) -> Result<Vec<Step>> {
    if before.identity != after.identity || before.primary_key != after.primary_key {
        return Err(key_change(table, after));
    }
    let col = quote_ident(&after.name);
    let mut steps = Vec::new();
    let retyped = before.sql_type != after.sql_type;
    if retyped {
        // Carries the defaults across: Postgres cannot cast a default itself.
        steps.push(retype(table, before, after)?);
    }
    if before.enum_values != after.enum_values {
        guessable_check(table, &after.name)?;
        steps.push(recheck(table, before, after));
    }
    if before.default != after.default && !retyped {
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
    if before.nullable != after.nullable {
        let step = nullability(table, before, after);
        if after.nullable {
            // Loosening goes first, so its down runs last: by then the old
            // type, CHECK and default are back, and the default fills the
            // NULLs written meanwhile before NOT NULL is set.
            steps.insert(0, step);
        } else {
            // Tightening goes last: the new default is set, rows with NULL
            // take it before NOT NULL.
            steps.push(step);
        }
    }
    Ok(steps)
}

/// `SET NOT NULL` (NULLs take the new default first, when there is one) or
/// `DROP NOT NULL`, whose down sets it again ([`restore_not_null`]).
fn nullability(table: &Table, before: &Column, after: &Column) -> Step {
    let col = quote_ident(&after.name);
    let set = |what: &str| alter(table, &format!("ALTER COLUMN {col} {what}"));
    if after.nullable {
        // Named as after the up file (a rename is undone later in the down
        // file), with the default the column has again by then.
        let (down, down_note) = restore_not_null(table, &after.name, before.default.as_deref());
        return Step {
            up: vec![set("DROP NOT NULL")],
            down,
            down_note: Some(down_note),
            ..Step::default()
        };
    }
    let mut up = Vec::new();
    if after.default.is_some() {
        // Existing NULLs take the new default instead of failing SET NOT NULL.
        up.push(format!(
            "UPDATE {} SET {col} = DEFAULT WHERE {col} IS NULL",
            table.qualified()
        ));
    }
    up.push(set("SET NOT NULL"));
    let note = match after.default {
        None => "fails if the column holds NULLs",
        Some(_) => "NULLs are set to the new default first",
    };
    Step {
        up,
        down: vec![set("DROP NOT NULL")],
        note: Some(note.to_owned()),
        ..Step::default()
    }
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
    // DROP DEFAULT, TYPE .. USING, SET DEFAULT: a default is not cast along
    // with the column ("default cannot be cast automatically").
    let to = |from: &Column, into: &Column| {
        let mut sql = Vec::new();
        if from.default.is_some() {
            sql.push(alter(table, &format!("ALTER COLUMN {col} DROP DEFAULT")));
        }
        let ty = &into.sql_type;
        sql.push(alter(
            table,
            &format!("ALTER COLUMN {col} TYPE {ty} USING {col}::{ty}"),
        ));
        if let Some(default) = &into.default {
            sql.push(alter(
                table,
                &format!("ALTER COLUMN {col} SET DEFAULT {default}"),
            ));
        }
        sql
    };
    Ok(Step {
        up: to(before, after),
        down: to(after, before),
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
        down_note: None,
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
        down_note: None,
    }
}
