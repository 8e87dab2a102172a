//! The benchmarked entity and the deterministic data both sides work on.
//!
//! Both sides read and write the same rows of the same table, so neither one
//! gets a warmer cache or a smaller index than the other.

use chrono::{DateTime, Utc};
use reposmith::Repository;
use uuid::Uuid;

/// The table the derive names; raw SQL spells it out by hand.
pub(crate) const TABLE: &str = "bench_items";

/// A row of a typical small table: a uuid key, an indexed integer, two text
/// fields, a float, optimistic locking and a creation time.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_items")]
pub(crate) struct Item {
    #[repo(id)]
    pub(crate) id: Uuid,
    /// Rows per bucket decide how many rows `find` by bucket can return.
    #[repo(index)]
    pub(crate) bucket: i32,
    pub(crate) name: String,
    pub(crate) body: String,
    pub(crate) score: f64,
    #[repo(version)]
    pub(crate) version: i64,
    #[repo(created_at)]
    pub(crate) created_at: DateTime<Utc>,
}

impl Item {
    /// A new, unsaved item (nil id: the writer assigns one, as reposmith does).
    pub(crate) fn new(n: u64, buckets: i32) -> Item {
        let bucket = i32::try_from(n % u64::try_from(buckets.max(1)).unwrap_or(1)).unwrap_or(0);
        Item {
            id: Uuid::nil(),
            bucket,
            name: format!("item {n}"),
            // Commas, quotes and a newline: the CSV path must escape them correctly.
            body: format!("body of item {n}, with \"quotes\" and a\nnewline; lorem ipsum dolor"),
            score: n as f64 * 0.25,
            version: 0,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    /// Stamps a new row the way `insert` does: a v7 id, version 1, created now.
    pub(crate) fn stamped(&self) -> Item {
        Item {
            id: Uuid::now_v7(),
            version: 1,
            created_at: Utc::now(),
            ..self.clone()
        }
    }
}

/// A small deterministic generator (xorshift64*), so both sides draw the
/// same id sequence and the bench needs no `rand`.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next index below `n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        usize::try_from(x % n as u64).unwrap_or(0)
    }
}
