//! Keyset pagination in SQL: renders the order and the "after this row"
//! predicate that `reposmith_core::keyset` decides.
//!
//! The order is the caller's sort keys followed by the id, ascending;
//! ascending keys sort NULLs last and descending keys NULLs first, so
//! `ORDER BY` spells `NULLS LAST`/`NULLS FIRST` on every key.
//!
//! When the core says a row-value comparison is exact (every key ascending,
//! none nullable), "after" is `(a, b) > ($1, $2)`, which a composite index
//! serves directly; otherwise it renders the core's disjuncts,
//! `k1 ≻ v1 OR (k1 = v1 AND k2 ≻ v2) OR ...`.

use reposmith_core::keyset::{After, Condition, KeyTest, SortKey};
use sea_query::{Expr, ExprTrait, NullOrdering, Order as SqOrder, SelectStatement};

use crate::render::{col, val};

/// Adds `ORDER BY` for `keys`.
pub(crate) fn order_by(select: &mut SelectStatement, keys: &[SortKey]) {
    for key in keys {
        let order = if key.descending {
            SqOrder::Desc
        } else {
            SqOrder::Asc
        };
        let nulls = if key.nulls_first() {
            NullOrdering::First
        } else {
            NullOrdering::Last
        };
        select.order_by_with_nulls(key.column.name, order, nulls);
    }
}

/// Rows strictly after the position `after` holds.
pub(crate) fn after(after: &After) -> Expr {
    if after.row_comparison() {
        return row_comparison(after);
    }
    after
        .disjuncts()
        .into_iter()
        .map(|d| {
            // Each equality of the prefix wraps the branch: `e2 AND (e1 AND step)`.
            d.equal
                .into_iter()
                .map(condition)
                .fold(condition(d.step), |acc, eq| eq.and(acc))
        })
        .reduce(|acc, b| acc.or(b))
        .unwrap_or_else(|| Expr::cust("FALSE"))
}

/// `(k1, k2, ...) > ($1, $2, ...)`.
fn row_comparison(after: &After) -> Expr {
    let columns = Expr::tuple(after.position().map(|(k, _)| col(k.column)));
    let values = Expr::tuple(after.position().map(|(k, v)| val(k.column, v.clone())));
    columns.gt(values)
}

/// One key test as SQL; a bound parameter holds every value.
fn condition(c: Condition) -> Expr {
    let column = c.key.column;
    let key = col(column);
    match c.test {
        KeyTest::Equal(v) => key.eq(val(column, v)),
        KeyTest::IsNull => key.is_null(),
        KeyTest::IsNotNull => key.is_not_null(),
        KeyTest::Greater(v) => key.gt(val(column, v)),
        KeyTest::Less(v) => key.lt(val(column, v)),
        KeyTest::GreaterOrNull(v) => key.clone().gt(val(column, v)).or(key.is_null()),
    }
}
