//! Foreign key steps (`#[repo(references(..))]`): dropped and changed keys
//! go first (before any table they name is dropped), added keys last (after
//! every table they name exists).
//!
//! A key added to a table that already existed is added `NOT VALID`, which
//! only checks new writes and holds its lock for a moment, and validated by
//! a migration of its own: `VALIDATE CONSTRAINT` scans the rows under a
//! `SHARE UPDATE EXCLUSIVE` lock that lets reads and writes through. A key
//! of a table created by the same migration is added valid: the table is
//! empty, there is nothing to scan.

use super::Step;
use crate::model::{ForeignKey, Table};

/// Drops the keys of kept table `before` that `after` no longer has, or
/// has with another definition (re-added by [`added_keys`]).
pub(super) fn dropped_keys(before: &Table, after: &Table) -> Vec<Step> {
    before
        .foreign_keys
        .iter()
        .filter(|key| after.foreign_key(&key.name) != Some(*key))
        .map(|key| Step {
            up: vec![key.drop_sql(before)],
            down: vec![key.add_sql(before, false)],
            down_destructive: Some(format!(
                "re-adds foreign key {} on {}: fails if rows written meanwhile reference \
                 missing rows",
                key.name,
                before.display_name()
            )),
            ..Step::default()
        })
        .collect()
}

/// The keys of `after` that `before` (absent: a new table) lacks or has
/// with another definition: the `main` steps, and the validations of keys
/// on existing tables, one migration each, by key name.
pub(super) fn added_keys(
    before: Option<&Table>,
    after: &Table,
) -> (Vec<Step>, Vec<(String, Step)>) {
    let mut steps = Vec::new();
    let mut validations = Vec::new();
    let new: Vec<&ForeignKey> = after
        .foreign_keys
        .iter()
        .filter(|key| before.and_then(|b| b.foreign_key(&key.name)) != Some(*key))
        .collect();
    for key in new {
        let existing = before.is_some();
        steps.push(Step {
            up: vec![key.add_sql(after, existing)],
            down: vec![key.drop_sql(after)],
            note: existing.then(|| {
                format!(
                    "{}: NOT VALID checks new writes only; the next migration validates the rows",
                    key.describe()
                )
            }),
            ..Step::default()
        });
        if existing {
            validations.push((
                key.name.clone(),
                Step {
                    up: vec![key.validate_sql(after)],
                    note: Some(format!(
                        "validates {} on {}: scans the rows without blocking writes; fails \
                         naming a row that references a missing one",
                        key.name,
                        after.display_name()
                    )),
                    ..Step::default()
                },
            ));
        }
    }
    (steps, validations)
}
