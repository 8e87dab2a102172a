//! A circuit breaker in front of a server that may be down: the cache's reads
//! and the rate limiter's decisions.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Closed: calls go through. Open: calls are skipped until `retry_at`, then
/// one call probes; its success closes the breaker. The cache gates reads
/// only with it (invalidations are always attempted); the rate limiter gates
/// every call to the limit store.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    /// Open until then (a probe moves it one cooldown on).
    open_until: Option<Instant>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            state: Mutex::new(State::default()),
            threshold,
            cooldown,
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

    pub(crate) fn success(&self) {
        let mut state = self.state();
        state.failures = 0;
        state.open_until = None;
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
        let b = Breaker::new(2, Duration::from_millis(20));
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
}
