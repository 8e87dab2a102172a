//! The local deny cache: a subject the store just denied is denied here,
//! without a round trip, until its retry-after passes.
//!
//! A denial for cost `c` by a limit counting cost holds for every cost of at
//! least `c` until the retry-after (a larger charge waits at least as long);
//! a denial by a limit counting calls holds for every cost. Another
//! process's refund may free room sooner, so the cache can only deny a call
//! the store would have admitted, never admit one it would deny; and, being
//! per process, it misses another process's reset or refund, so an entry
//! lives at most `deny_cache_max_age` (2 s by default).
//! Concurrency denials are not cached: a release frees a permit at any time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::decision::{Decision, Source};
use super::spec::{Kind, Unit};

#[derive(Debug)]
pub(crate) struct DenyCache {
    capacity: usize,
    max_age: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    made: Instant,
    until: Instant,
    /// The smallest cost the denial holds for (0: every cost).
    from_cost: u64,
    decision: Decision,
}

impl DenyCache {
    pub(crate) fn new(capacity: usize, max_age: Duration) -> DenyCache {
        DenyCache {
            capacity,
            max_age,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached denial of `subject` covering `cost`, its waits shortened by
    /// the time since it was made.
    pub(crate) fn get(&self, subject: &str, cost: u64) -> Option<Decision> {
        if self.capacity == 0 {
            return None;
        }
        let mut entries = self.entries();
        let entry = entries.get(subject)?;
        let now = Instant::now();
        if now >= entry.until {
            entries.remove(subject);
            return None;
        }
        if cost < entry.from_cost {
            return None;
        }
        let elapsed = now - entry.made;
        let mut decision = entry.decision.clone();
        decision.retry_after = decision.retry_after.saturating_sub(elapsed);
        decision.reset_after = decision.reset_after.saturating_sub(elapsed);
        for status in &mut decision.limits {
            status.retry_after = status.retry_after.saturating_sub(elapsed);
            status.reset_after = status.reset_after.saturating_sub(elapsed);
        }
        decision.source = Source::DenyCache;
        decision.decided_at_us = None;
        Some(decision)
    }

    /// Remembers a store's denial of `subject` at `cost`, unless a
    /// concurrency limit took part in it.
    pub(crate) fn put(&self, subject: &str, cost: u64, decision: &Decision) {
        if self.capacity == 0
            || self.max_age.is_zero()
            || decision.allowed
            || decision.retry_after.is_zero()
        {
            return;
        }
        let denying = decision.limits.iter().filter(|l| !l.admitted);
        let mut from_cost = cost;
        for status in denying {
            match (status.kind, status.unit) {
                (Kind::Concurrency { .. }, _) => return,
                // Holds for every cost only if this limit alone blocks
                // until the cached retry-after.
                (_, Unit::Calls) if status.retry_after >= decision.retry_after => from_cost = 0,
                _ => {}
            }
        }
        let now = Instant::now();
        let mut entries = self.entries();
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(
            subject.to_owned(),
            Entry {
                made: now,
                until: now + decision.retry_after.min(self.max_age),
                from_cost,
                decision: decision.clone(),
            },
        );
    }

    /// Forgets `subject` (after a reset).
    pub(crate) fn forget(&self, subject: &str) {
        self.entries().remove(subject);
    }
}
