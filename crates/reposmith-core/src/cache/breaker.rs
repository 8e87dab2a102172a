//! The circuit breaker in front of the cache server.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a read may use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMode {
    /// Look up and fill.
    Use,
    /// Look up only to learn whether the server answers; read the database.
    Probe,
    /// Read the database without asking the server.
    Skip,
}

/// Closed: calls go through. Open: calls are skipped until `retry_at`, then
/// one call probes; its success closes the breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
    grace: Duration,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    /// Open until then (a probe moves it one cooldown on).
    open_until: Option<Instant>,
    /// An invalidation failed since the cache last answered.
    missed_invalidation: bool,
    /// Reads skip the cache until then: the replay grace after recovery.
    bypass_until: Option<Instant>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration, grace: Duration) -> Breaker {
        Breaker {
            state: Mutex::new(State::default()),
            threshold,
            cooldown,
            grace,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go to the server now. While open, the first
    /// caller after the cooldown is let through as the probe.
    pub(crate) fn allow(&self) -> bool {
        let mut state = self.state();
        match state.open_until {
            None => true,
            Some(until) if Instant::now() >= until => {
                state.open_until = Some(Instant::now() + self.cooldown);
                true
            }
            Some(_) => false,
        }
    }

    /// How a read may use the cache now.
    pub(crate) fn read_mode(&self) -> ReadMode {
        let (missed, bypass) = {
            let state = self.state();
            let bypass = state.bypass_until.is_some_and(|t| Instant::now() < t);
            (state.missed_invalidation, bypass)
        };
        match (missed, bypass) {
            // Only a call that reaches the server can tell it is back.
            (true, _) if self.allow() => ReadMode::Probe,
            (true, _) | (false, true) => ReadMode::Skip,
            (false, false) if self.allow() => ReadMode::Use,
            (false, false) => ReadMode::Skip,
        }
    }

    pub(crate) fn success(&self) {
        let mut state = self.state();
        state.failures = 0;
        state.open_until = None;
        if std::mem::take(&mut state.missed_invalidation) {
            state.bypass_until = Some(Instant::now() + self.grace);
        }
    }

    /// Records a failed call; returns true when this opened the breaker.
    pub(crate) fn failure(&self) -> bool {
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        if state.failures >= self.threshold {
            let was_closed = state.open_until.is_none();
            state.open_until = Some(Instant::now() + self.cooldown);
            return was_closed;
        }
        false
    }

    /// Records that an invalidation did not reach the server: reads skip
    /// the cache from now until the replay grace after it answers again.
    pub(crate) fn missed_invalidation(&self) {
        let mut state = self.state();
        state.missed_invalidation = true;
    }

    /// Whether the breaker is open (calls are being skipped).
    pub(crate) fn is_open(&self) -> bool {
        self.state().open_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let b = Breaker::new(2, Duration::from_millis(20), Duration::ZERO);
        assert!(b.allow());
        assert!(!b.failure());
        assert!(b.failure());
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allow(), "the probe");
        assert!(!b.allow(), "only one probe per cooldown");
        b.success();
        assert!(b.allow() && !b.is_open());
    }

    #[test]
    fn a_missed_invalidation_keeps_reads_off_until_the_grace_after_recovery() {
        let b = Breaker::new(1, Duration::from_millis(10), Duration::from_millis(30));
        b.failure();
        b.missed_invalidation();
        assert_eq!(
            b.read_mode(),
            ReadMode::Skip,
            "open: no probe before the cooldown"
        );
        std::thread::sleep(Duration::from_millis(12));
        assert_eq!(b.read_mode(), ReadMode::Probe);
        assert_eq!(b.read_mode(), ReadMode::Skip);
        b.success();
        assert_eq!(b.read_mode(), ReadMode::Skip, "grace running");
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(b.read_mode(), ReadMode::Use);
    }
}
