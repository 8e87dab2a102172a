//! [`PendingInvalidations`]: what a unit of work's writes invalidate,
//! held until its outermost commit.

use std::sync::Mutex;

use super::store::Invalidation;

/// Invalidations recorded by a unit of work and its nested units, each
/// tagged with the savepoint level that recorded it: rolling back a nested
/// unit drops its own (its writes are undone, so nothing changed), and the
/// outermost commit takes them all, to be applied after COMMIT.
#[derive(Debug, Default)]
pub struct PendingInvalidations {
    entries: Mutex<Vec<(usize, Invalidation)>>,
}

impl PendingInvalidations {
    /// An empty buffer.
    pub fn new() -> PendingInvalidations {
        PendingInvalidations::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<(usize, Invalidation)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `invalidation` for the unit at savepoint `level` (0: the
    /// outermost unit).
    pub fn record(&self, level: usize, invalidation: Invalidation) {
        if invalidation.is_empty() {
            return;
        }
        let mut entries = self.entries();
        match entries.last_mut() {
            Some((last, pending)) if *last == level => pending.extend(invalidation),
            _ => entries.push((level, invalidation)),
        }
    }

    /// Drops what the unit at `level` and the units nested in it recorded.
    pub fn roll_back_to(&self, level: usize) {
        self.entries().retain(|(l, _)| *l < level);
    }

    /// Whether a write was recorded (the unit has written a cached entity).
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// Everything recorded, merged; the buffer is left empty.
    pub fn take(&self) -> Invalidation {
        let mut merged = Invalidation::default();
        for (_, invalidation) in std::mem::take(&mut *self.entries()) {
            merged.extend(invalidation);
        }
        merged.dedup();
        merged
    }

    /// Everything recorded, merged, leaving the buffer as it is.
    pub fn peek(&self) -> Invalidation {
        let mut merged = Invalidation::default();
        for (_, invalidation) in self.entries().iter() {
            merged.extend(invalidation.clone());
        }
        merged.dedup();
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(keys: &[&str]) -> Invalidation {
        Invalidation {
            rows: keys.iter().map(|k| (*k).to_owned()).collect(),
            scopes: Vec::new(),
        }
    }

    #[test]
    fn a_nested_rollback_drops_only_its_own() {
        let pending = PendingInvalidations::new();
        pending.record(0, rows(&["a"]));
        pending.record(3, rows(&["b"]));
        pending.record(5, rows(&["c"]));
        pending.roll_back_to(3);
        assert_eq!(pending.take(), rows(&["a"]));
        assert!(pending.is_empty());
    }

    #[test]
    fn repeated_keys_are_merged() {
        let pending = PendingInvalidations::new();
        pending.record(0, rows(&["a", "b"]));
        pending.record(0, rows(&["b", "c"]));
        assert_eq!(pending.take(), rows(&["a", "b", "c"]));
    }
}
