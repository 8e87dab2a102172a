//! [`Clock`]: where repositories take the time they stamp rows with.
//!
//! Every timestamp a repository writes on its own (`created_at` and
//! `updated_at` on insert, update, upsert, patch and `update_where`, the
//! soft-delete column and `updated_at` on soft delete and restore, the
//! cutoffs of `purge_deleted` and `purge_expired`) is read from the clock
//! of the backend's configuration, never from the database server, so a
//! test can fix it and assert stamps exactly. The default is the system
//! clock; [`Clock::fixed`] is a manual one that moves only when told.
//!
//! Backends store the instant at their own precision: PostgreSQL keeps
//! microseconds, MongoDB milliseconds. A fixed clock set to a whole
//! millisecond therefore reads back unchanged on both.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::{Error, Result};

/// The source of the timestamps repositories stamp: the system clock (the
/// default) or a manual clock for tests.
///
/// Cloning a manual clock shares it: every clone, and every backend and task
/// holding one, sees the same time, and [`Clock::advance`] on any of them
/// moves them all.
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use reposmith_core::Clock;
///
/// let start = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
/// let clock = Clock::fixed(start);
/// let shared = clock.clone(); // e.g. given to PgConfig::clock
/// assert_eq!(shared.now(), start);
/// clock.advance(Duration::from_secs(60)).unwrap();
/// assert_eq!(shared.now(), start + chrono::TimeDelta::seconds(60));
/// ```
#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system clock; otherwise the manual clock's current time.
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system clock (`Utc::now()`), the default.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A manual clock reading `at` until it is moved with
    /// [`advance`](Clock::advance) or [`set`](Clock::set).
    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock {
            manual: Some(Arc::new(Mutex::new(at))),
        }
    }

    /// The current time of this clock.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now(),
            Some(at) => *lock(at),
        }
    }

    /// True for the system clock.
    pub fn is_system(&self) -> bool {
        self.manual.is_none()
    }

    /// Moves a manual clock forward by `by` and returns its new time.
    ///
    /// [`Error::InvalidInput`] on the system clock (it cannot be moved) and
    /// when the new time would leave chrono's range; the clock is then
    /// unchanged.
    pub fn advance(&self, by: Duration) -> Result<DateTime<Utc>> {
        let at = self.manual("advance")?;
        let mut now = lock(at);
        let next = TimeDelta::from_std(by)
            .ok()
            .and_then(|by| now.checked_add_signed(by))
            .ok_or_else(|| {
                Error::invalid(
                    "Clock",
                    "advance",
                    format!("moving {now} forward by {by:?} leaves the representable range"),
                )
            })?;
        *now = next;
        Ok(next)
    }

    /// Sets a manual clock to `at` (earlier or later than its current time).
    ///
    /// [`Error::InvalidInput`] on the system clock.
    pub fn set(&self, at: DateTime<Utc>) -> Result<()> {
        *lock(self.manual("set")?) = at;
        Ok(())
    }

    /// The manual clock's cell, or the error of `operation` on the system clock.
    fn manual(&self, operation: &str) -> Result<&Arc<Mutex<DateTime<Utc>>>> {
        self.manual.as_ref().ok_or_else(|| {
            Error::invalid(
                "Clock",
                operation.to_owned(),
                "the system clock cannot be moved; use Clock::fixed for a manual clock",
            )
        })
    }
}

/// The manual clock's time; a panic while it was held cannot leave it torn.
fn lock(at: &Mutex<DateTime<Utc>>) -> MutexGuard<'_, DateTime<Utc>> {
    at.lock().unwrap_or_else(|p| p.into_inner())
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::System"),
            Some(at) => write!(f, "Clock::Fixed({})", *lock(at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap()
    }

    #[test]
    fn a_fixed_clock_stands_still_until_moved_and_clones_share_it() {
        let clock = Clock::fixed(start());
        let other = clock.clone();
        assert_eq!(clock.now(), start());
        assert_eq!(clock.now(), start());
        let moved = other.advance(Duration::from_millis(1500)).unwrap();
        assert_eq!(moved, start() + TimeDelta::milliseconds(1500));
        assert_eq!(clock.now(), moved);
        clock.set(start()).unwrap();
        assert_eq!(other.now(), start());
        assert_eq!(format!("{other:?}"), format!("Clock::Fixed({})", start()));
    }

    #[test]
    fn the_system_clock_follows_time_and_refuses_to_move() {
        let clock = Clock::default();
        assert!(clock.is_system());
        let before = Utc::now();
        let now = clock.now();
        assert!(now >= before && now <= Utc::now());
        let err = clock.advance(Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("system clock"), "{err}");
        assert!(clock.set(start()).is_err());
    }

    #[test]
    fn advancing_past_the_range_is_refused_and_leaves_the_clock() {
        let clock = Clock::fixed(start());
        assert!(clock.advance(Duration::from_secs(u64::MAX)).is_err());
        assert_eq!(clock.now(), start());
    }
}
