//! What a bulk write that keeps going past bad rows reports: how many rows
//! the store confirmed, and for each row it did not store, where the row is
//! in the caller's slice and why.
//!
//! Backend-neutral: a backend fills an [`InsertReport`] from its own checks
//! (a row refused before sending: [`Error::InvalidInput`], [`Error::TooLarge`])
//! and from the server's per-row errors (a duplicate key:
//! [`Error::Conflict`]). A failure of the call as a whole (the server
//! unreachable, a deadline, a write concern not satisfied) is not a row
//! failure: the operation returns `Err` instead, and its documentation says
//! what is known about the rows then.

use crate::Error;

/// The outcome of a bulk insert that stores every row it can.
///
/// Every row of the input is accounted for exactly once: either counted in
/// [`inserted`](Self::inserted) or listed in [`failures`](Self::failures),
/// so `inserted + failures.len()` is the number of rows given.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct InsertReport {
    /// Rows the store confirmed it stored.
    pub inserted: u64,
    /// The rows not stored, ordered by [`RowFailure::index`], one entry per row.
    pub failures: Vec<RowFailure>,
}

/// One row a bulk insert did not store.
#[derive(Debug)]
#[non_exhaustive]
pub struct RowFailure {
    /// The row's position in the slice the caller passed.
    pub index: usize,
    /// Why it was not stored, typed as the same error a single insert of
    /// the row would have returned.
    pub error: Error,
}

impl InsertReport {
    /// A report of `inserted` stored rows and `failures`; the failures are
    /// sorted by index here, so backends may collect them in any order.
    pub fn new(inserted: u64, mut failures: Vec<RowFailure>) -> Self {
        failures.sort_by_key(|f| f.index);
        InsertReport { inserted, failures }
    }

    /// True when every row was stored.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// The positions of the rows not stored, ascending: what to fix or send again.
    pub fn failed_indexes(&self) -> Vec<usize> {
        self.failures.iter().map(|f| f.index).collect()
    }
}

impl RowFailure {
    /// The row at `index` was not stored because of `error`.
    pub fn new(index: usize, error: Error) -> Self {
        RowFailure { index, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_ordered_by_index_and_completeness_follows_them() {
        let conflict = |index| {
            let error = Error::Conflict {
                entity: "T",
                constraint: "t_name_key".into(),
                field: Some("name"),
            };
            RowFailure::new(index, error)
        };
        let report = InsertReport::new(3, vec![conflict(7), conflict(2)]);
        assert_eq!(report.failed_indexes(), vec![2, 7]);
        assert!(!report.is_complete());
        assert!(InsertReport::new(5, Vec::new()).is_complete());
    }
}
