//! What a down file brings back after its up file destroyed something, on a
//! table that has rows: a dropped column, and a dropped `NOT NULL`.
//!
//! The rule: the revert must succeed on the rows that exist when it runs,
//! and its comment says exactly what comes back. A dropped column's values
//! are gone, so it cannot come back `NOT NULL` unless a default fills every
//! row; a column made nullable may have been given NULLs meanwhile, so its
//! `NOT NULL` comes back only after its default fills them, when it has one.

use reposmith_postgres::quote_ident;

use super::columns::alter;
use crate::model::{Column, Table};

/// The statements that re-add a dropped `column` of `table` (as it was
/// before the drop, indexes included) and the comment saying what comes back.
///
/// - With a default that fills every row (any default but `NULL`) and no
///   unique index over the column: as declared, each row holding the
///   default, `NOT NULL` if it was.
/// - Otherwise: empty (NULL in every row) and nullable; a default comes back
///   for new rows only (one value in every row would break a unique index).
pub(super) fn re_add_column(table: &Table, column: &Column) -> (Vec<String>, String) {
    let add = |c: &Column| alter(table, &format!("ADD COLUMN {}", c.definition()));
    if column.generated.is_some() {
        return (
            vec![add(column)],
            "the generated column comes back computed from its sources".to_owned(),
        );
    }
    let unique = table
        .indexes
        .iter()
        .any(|i| i.unique && i.columns.contains(&column.name));
    let filling = column.default.as_deref().filter(|d| fills_rows(d));
    if let (Some(default), false) = (filling, unique) {
        let nullability = if column.nullable {
            "nullable as before"
        } else {
            "NOT NULL as before"
        };
        let note = format!(
            "the column comes back filled with its default {default} in every row, \
             {nullability}; its old values are not restored"
        );
        return (vec![add(column)], note);
    }
    let mut empty = column.clone();
    empty.nullable = true;
    let default = empty.default.take();
    let mut sql = vec![add(&empty)];
    let mut note = "the column comes back empty (NULL in every row) and nullable; \
                    its old values are not restored"
        .to_owned();
    if let Some(default) = &default {
        let col = quote_ident(&column.name);
        sql.push(alter(
            table,
            &format!("ALTER COLUMN {col} SET DEFAULT {default}"),
        ));
        if unique {
            note.push_str(&format!(
                ". Its default {default} is for new rows only: one value in every row \
                 would break its unique index"
            ));
        }
    }
    if !column.nullable {
        note.push_str(&format!(
            ". It was NOT NULL: `check` reports the difference until you fill it and run \
             ALTER TABLE {} ALTER COLUMN {} SET NOT NULL",
            table.qualified(),
            quote_ident(&column.name)
        ));
    }
    (sql, note)
}

/// True when a column default gives every row a value: any expression but
/// a bare `NULL` (possibly cast).
fn fills_rows(default: &str) -> bool {
    let default = default.trim().to_ascii_lowercase();
    !(default == "null" || default.starts_with("null::") || default.starts_with("(null)"))
}

/// The down statements that set `NOT NULL` on column `name` again after the
/// up file dropped it, and the comment saying when they fail. NULLs written
/// meanwhile take the column's `default` first, when it has one; the caller
/// orders the steps so that the default, type and `CHECK` are the old ones
/// again by the time these run.
pub(super) fn restore_not_null(
    table: &Table,
    name: &str,
    default: Option<&str>,
) -> (Vec<String>, String) {
    let col = quote_ident(name);
    let set = alter(table, &format!("ALTER COLUMN {col} SET NOT NULL"));
    match default.filter(|d| fills_rows(d)) {
        Some(default) => (
            vec![
                format!(
                    "UPDATE {} SET {col} = DEFAULT WHERE {col} IS NULL",
                    table.qualified()
                ),
                set,
            ],
            format!("NULLs written since the migration take the default {default} first"),
        ),
        None => (
            vec![set],
            "fails if NULLs were written since the migration: the column has no default \
             to fill them with; fill them first"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_null_default_leaves_rows_empty() {
        for default in ["NULL", " null::text", "(NULL)"] {
            assert!(!fills_rows(default), "{default}");
        }
        for default in ["0", "''", "now()", "gen_random_uuid()", "'null'"] {
            assert!(fills_rows(default), "{default}");
        }
    }
}
