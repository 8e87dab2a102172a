//! [`After`]: "the rows strictly after this position" as data a backend renders.
//!
//! When every key has the same direction and none is nullable, "after" is
//! one row-value comparison `(a, b) > (v1, v2)` ([`After::row_comparison`]),
//! which a backend that has it serves from a composite index. Otherwise,
//! and on backends without row values, it is the disjunction
//! `k1 ≻ v1 OR (k1 = v1 AND k2 ≻ v2) OR ...` ([`After::disjuncts`]), where
//! `≻` means "comes after in this key's direction, NULL placement included":
//! ascending keys put NULLs last, descending keys put them first.

use super::SortKey;
use crate::value::Value;

/// Rows strictly after a keyset position; built by [`Keyset::after`](super::Keyset::after).
#[derive(Debug, Clone, PartialEq)]
pub struct After {
    keys: Vec<SortKey>,
    values: Vec<Value>,
}

/// One branch of the expansion: every key of `equal` equals the position,
/// and `step`'s key comes after it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Disjunct {
    /// The keys before `step`, each [`KeyTest::Equal`] or [`KeyTest::IsNull`].
    pub equal: Vec<Condition>,
    /// The key that decides this branch: its value comes strictly after.
    pub step: Condition,
}

/// A test on one sort key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Condition {
    /// The key tested.
    pub key: SortKey,
    /// What its value must satisfy.
    pub test: KeyTest,
}

/// What one key's value must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyTest {
    /// Equals this value (never [`Value::Null`]: that is [`KeyTest::IsNull`]).
    Equal(Value),
    /// Is NULL (in MongoDB also missing, which sorts with null).
    IsNull,
    /// Is not NULL: after a NULL in a descending key, whose NULLs come first.
    IsNotNull,
    /// Is greater than this value: an ascending key that is never NULL.
    Greater(Value),
    /// Is less than this value: a descending key (its NULLs came before).
    Less(Value),
    /// Is greater than this value or NULL: an ascending nullable key, whose
    /// NULLs come last.
    GreaterOrNull(Value),
}

impl After {
    pub(super) fn new(keys: Vec<SortKey>, values: Vec<Value>) -> Self {
        After { keys, values }
    }

    /// Each sort key with the position's value for it, in order, the id last.
    pub fn position(&self) -> impl Iterator<Item = (&SortKey, &Value)> {
        self.keys.iter().zip(&self.values)
    }

    /// Whether the row-value comparison `(k1, k2, ...) > (v1, v2, ...)`
    /// selects exactly these rows: every key has the same direction and none
    /// is nullable. The id, last, is ascending, so one direction means
    /// ascending and the operator is always `>`.
    pub fn row_comparison(&self) -> bool {
        self.keys
            .iter()
            .all(|k| !k.descending && !k.column.nullable)
    }

    /// The expansion `k1 ≻ v1 OR (k1 = v1 AND k2 ≻ v2) OR ...`, one
    /// [`Disjunct`] per key a row can come after on.
    ///
    /// A key holding NULL in an ascending order has no branch (no value
    /// sorts after NULLs last). Empty means no row comes after, which a
    /// [`Keyset`](super::Keyset) never yields: its last key, the id, is never NULL.
    pub fn disjuncts(&self) -> Vec<Disjunct> {
        let mut disjuncts = Vec::new();
        let mut equal = Vec::new();
        for (key, value) in self.position() {
            if let Some(test) = comes_after(key, value) {
                let step = Condition { key: *key, test };
                disjuncts.push(Disjunct {
                    equal: equal.clone(),
                    step,
                });
            }
            let test = match value {
                Value::Null => KeyTest::IsNull,
                value => KeyTest::Equal(value.clone()),
            };
            equal.push(Condition { key: *key, test });
        }
        disjuncts
    }
}

/// The test for "`key` sorts after `value`"; `None` when nothing can (a
/// NULL in an ascending key, where NULLs come last).
fn comes_after(key: &SortKey, value: &Value) -> Option<KeyTest> {
    match (key.descending, value) {
        (false, Value::Null) => None,
        (true, Value::Null) => Some(KeyTest::IsNotNull),
        (false, v) if key.column.nullable => Some(KeyTest::GreaterOrNull(v.clone())),
        (false, v) => Some(KeyTest::Greater(v.clone())),
        (true, v) => Some(KeyTest::Less(v.clone())),
    }
}
