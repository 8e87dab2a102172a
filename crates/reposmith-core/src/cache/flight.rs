//! In-process single flight: concurrent reads of one entry share one
//! lookup (and, on a miss, one database read).
//!
//! A caller only ever shares the result of a lookup that *started after it
//! arrived*. Sharing one already under way would be wrong: a lookup sent
//! before a commit may return the old value, and a reader that arrived
//! after that commit returned must not get it. So while a flight runs,
//! arrivals queue on the *next* flight, led by the first of them once the
//! running one ends: a stampede costs at most two lookups per key per
//! process, and every answer is as fresh as its reader needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::codec::Entry;
use super::store::EntryKey;

/// A flight's state, as its followers see it.
#[derive(Clone)]
pub(crate) enum Flight {
    Running,
    Done(Arc<Entry>),
    /// The leader failed or was cancelled: followers look up themselves.
    Failed,
}

/// The flights under way, per entry.
#[derive(Default)]
pub(crate) struct Flights {
    slots: Mutex<HashMap<EntryKey, Slot>>,
}

struct Slot {
    /// The flight whose lookup is running.
    current: watch::Receiver<Flight>,
    /// The flight queued behind it, not started yet.
    next: Option<watch::Receiver<Flight>>,
}

/// What a caller does for an entry.
pub(crate) enum Role<'a> {
    /// Look up now and publish the result.
    Lead(Leader<'a>),
    /// Wait for the running flight to end (bounded), then lead the next.
    LeadNext(watch::Receiver<Flight>, Leader<'a>),
    /// Share the result of the queued flight.
    Follow(watch::Receiver<Flight>),
}

impl Flights {
    fn slots(&self) -> MutexGuard<'_, HashMap<EntryKey, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller's role for `key`.
    pub(crate) fn join(&self, key: &EntryKey) -> Role<'_> {
        let mut slots = self.slots();
        let (tx, rx) = watch::channel(Flight::Running);
        match slots.get_mut(key) {
            None => {
                let leader = Leader::new(self, key, tx, rx.clone(), true);
                slots.insert(
                    key.clone(),
                    Slot {
                        current: rx,
                        next: None,
                    },
                );
                Role::Lead(leader)
            }
            Some(slot) => match &slot.next {
                Some(next) => Role::Follow(next.clone()),
                None => {
                    let leader = Leader::new(self, key, tx, rx.clone(), false);
                    slot.next = Some(rx);
                    let running = slot.current.clone();
                    Role::LeadNext(running, leader)
                }
            },
        }
    }
}

/// Waits (at most `wait`) for a flight's entry; `None` when it failed,
/// was abandoned or took too long.
pub(crate) async fn outcome(mut rx: watch::Receiver<Flight>, wait: Duration) -> Option<Arc<Entry>> {
    let waited = tokio::time::timeout(wait, async {
        loop {
            match &*rx.borrow_and_update() {
                Flight::Done(entry) => return Some(Arc::clone(entry)),
                Flight::Failed => return None,
                Flight::Running => {}
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    });
    waited.await.ok().flatten()
}

/// Waits (at most `wait`) until a flight is no longer running.
pub(crate) async fn ended(mut rx: watch::Receiver<Flight>, wait: Duration) {
    let _ = tokio::time::timeout(wait, rx.wait_for(|f| !matches!(f, Flight::Running))).await;
}

/// The leader of a flight: publishes its outcome, or `Failed` when dropped
/// without one (an error or a cancelled read), and keeps the slot table
/// consistent either way.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: EntryKey,
    tx: Option<watch::Sender<Flight>>,
    /// A receiver of this flight, to recognise it in the slot table.
    own: watch::Receiver<Flight>,
    /// Whether this flight is the slot's current one (else it is queued).
    current: bool,
}

impl<'a> Leader<'a> {
    fn new(
        flights: &'a Flights,
        key: &EntryKey,
        tx: watch::Sender<Flight>,
        own: watch::Receiver<Flight>,
        current: bool,
    ) -> Self {
        Leader {
            flights,
            key: key.clone(),
            tx: Some(tx),
            own,
            current,
        }
    }

    fn mine(&self, rx: &watch::Receiver<Flight>) -> bool {
        self.own.same_channel(rx)
    }

    /// Makes the queued flight the current one: its lookup starts now.
    pub(crate) fn promote(&mut self) {
        let mut slots = self.flights.slots();
        if let Some(slot) = slots.get_mut(&self.key)
            && slot.next.as_ref().is_some_and(|next| self.mine(next))
        {
            slot.current = slot.next.take().expect("checked above");
        } else {
            // The slot was cleaned up meanwhile (the running flight was
            // abandoned): start afresh as its only flight.
            slots.insert(
                self.key.clone(),
                Slot {
                    current: self.own.clone(),
                    next: None,
                },
            );
        }
        self.current = true;
    }

    /// Publishes the flight's entry (`None`: it failed).
    pub(crate) fn finish(mut self, entry: Option<Arc<Entry>>) {
        self.retire();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(entry.map_or(Flight::Failed, Flight::Done));
        }
    }

    /// Takes this flight out of the slot table.
    fn retire(&self) {
        let mut slots = self.flights.slots();
        let Some(slot) = slots.get_mut(&self.key) else {
            return;
        };
        if self.current && self.mine(&slot.current) {
            if slot.next.is_none() {
                slots.remove(&self.key);
            }
            return;
        }
        if slot.next.as_ref().is_some_and(|next| self.mine(next)) {
            slot.next = None;
            if !matches!(&*slot.current.borrow(), Flight::Running) {
                slots.remove(&self.key);
            }
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.retire();
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(Flight::Failed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EntryKey {
        EntryKey::Row("k".into())
    }

    #[tokio::test]
    async fn arrivals_during_a_flight_share_the_next_one_not_the_running_one() {
        let flights = Flights::default();
        let Role::Lead(first) = flights.join(&key()) else {
            panic!("first leads")
        };
        let Role::LeadNext(running, mut second) = flights.join(&key()) else {
            panic!("second queues as the next leader")
        };
        let Role::Follow(third) = flights.join(&key()) else {
            panic!("third follows the next")
        };
        first.finish(Some(Arc::new(Entry::Absent)));
        ended(running, Duration::from_secs(1)).await;
        second.promote();
        let Role::LeadNext(..) = flights.join(&key()) else {
            panic!("a fourth arriving now queues behind the promoted flight")
        };
        second.finish(Some(Arc::new(Entry::Row(Vec::new()))));
        let got = outcome(third, Duration::from_secs(1)).await;
        assert_eq!(
            got.as_deref(),
            Some(&Entry::Row(Vec::new())),
            "the next flight's entry"
        );
    }

    #[tokio::test]
    async fn an_abandoned_flight_fails_its_followers_and_leaves_no_slot() {
        let flights = Flights::default();
        let Role::Lead(first) = flights.join(&key()) else {
            panic!()
        };
        let Role::LeadNext(_, second) = flights.join(&key()) else {
            panic!()
        };
        let Role::Follow(third) = flights.join(&key()) else {
            panic!()
        };
        drop(second);
        assert!(outcome(third, Duration::from_secs(1)).await.is_none());
        drop(first);
        assert!(flights.slots().is_empty());
        assert!(matches!(flights.join(&key()), Role::Lead(_)));
    }
}
