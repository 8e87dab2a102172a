//! Read-your-writes state: a position in the primary's write-ahead log
//! ([`WalPosition`]) and the [`Session`] that carries the latest one a
//! client wrote, across requests if need be.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reposmith_core::{Error, Result};

/// A position in PostgreSQL's write-ahead log (a `pg_lsn`), printed the way
/// the server prints it: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalPosition(u64);

impl WalPosition {
    /// Stands for "wrote, position unknown" in a [`Session`]: its reads go
    /// to the primary (prints as `FFFFFFFF/FFFFFFFF`).
    pub(crate) const UNKNOWN: WalPosition = WalPosition(u64::MAX);

    /// The position as one number (bytes since the log began).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The position at byte `offset` of the log.
    pub fn from_u64(offset: u64) -> Self {
        WalPosition(offset)
    }

    /// Bytes from `earlier` to `self`; zero when `earlier` is not earlier.
    pub fn bytes_after(self, earlier: WalPosition) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for WalPosition {
    type Err = Error;

    /// Parses `HI/LO` in hexadecimal, as `pg_lsn` prints; anything else
    /// (a tampered cookie, say) is [`Error::InvalidInput`].
    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "Session",
                "token",
                "not a WAL position (`HI/LO` in hexadecimal, as PostgreSQL prints a pg_lsn)",
            )
        };
        let (hi, lo) = text.split_once('/').ok_or_else(bad)?;
        let half = |part: &str| {
            let valid =
                (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            valid
                .then(|| u32::from_str_radix(part, 16).ok())
                .flatten()
                .ok_or_else(bad)
        };
        Ok(WalPosition(
            (u64::from(half(hi)?) << 32) | u64::from(half(lo)?),
        ))
    }
}

/// What a client has written, as the latest WAL position of its commits, so
/// that its reads on a replica wait until the replica has replayed them.
///
/// A repository or unit of work given the session
/// ([`PgRepository::in_session`](crate::PgRepository::in_session),
/// [`PgUnitOfWork::in_session`](crate::PgUnitOfWork::in_session)) records
/// the position of each commit in it; reads through a repository in the
/// session wait on the chosen replica until `pg_last_wal_replay_lsn()`
/// reaches that position, for at most
/// [`ReplicaConfig::read_your_writes_timeout`](crate::ReplicaConfig::read_your_writes_timeout),
/// then run on the primary. Clones share the position. To carry it across
/// requests (a cookie, a header), send [`Session::token`] and rebuild it with
/// [`Session::resume`].
///
/// A token is not a secret and grants nothing, but it steers reads: a
/// forged position ahead of the primary makes each of its reads hold a
/// replica connection for up to `read_your_writes_timeout` and then run on
/// the primary. Behind a public endpoint, sign the token (or keep it
/// server-side) if clients are not trusted. A token that does not parse is
/// [`Error::InvalidInput`]: treat it as a new session.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The latest position written, 0 when none.
    latest: Arc<AtomicU64>,
}

impl Session {
    /// A session that has written nothing yet: its reads go where any read goes.
    pub fn new() -> Self {
        Session::default()
    }

    /// The session a client carried as [`Session::token`];
    /// [`Error::InvalidInput`] when the token is not one.
    pub fn resume(token: &str) -> Result<Self> {
        let session = Session::new();
        if !token.is_empty() {
            session.observe(token.parse()?);
        }
        Ok(session)
    }

    /// The latest position written in this session, to send to the client
    /// (empty when the session has written nothing).
    pub fn token(&self) -> String {
        self.position().map(|p| p.to_string()).unwrap_or_default()
    }

    /// The latest position written in this session, if any.
    pub fn position(&self) -> Option<WalPosition> {
        match self.latest.load(Ordering::Acquire) {
            0 => None,
            n => Some(WalPosition(n)),
        }
    }

    /// Records a commit at `position` (positions only move forward). A
    /// known position also replaces "unknown" (a write whose position was lost):
    /// a later commit's position covers every earlier commit.
    pub fn observe(&self, position: WalPosition) {
        let _ = self
            .latest
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                match current == WalPosition::UNKNOWN.0 && position != WalPosition::UNKNOWN {
                    true => Some(position.0),
                    false => (position.0 > current).then_some(position.0),
                }
            });
    }

    /// Records a commit whose position could not be read (the server went
    /// away right after it): the session's reads go to the primary from now on.
    pub(crate) fn lost_track(&self) {
        self.observe(WalPosition::UNKNOWN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_print_and_parse_as_postgres_does() {
        for (text, value) in [
            ("0/0", 0),
            ("0/16B3748", 0x16B_3748),
            ("16/B374D848", 0x16_B374_D848),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
        ] {
            let parsed: WalPosition = text.parse().unwrap();
            assert_eq!(parsed.as_u64(), value, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!("0/00ab".parse::<WalPosition>().unwrap().as_u64(), 0xAB);
    }

    #[test]
    fn tampered_tokens_are_invalid_input() {
        for text in [
            "",
            "/",
            "1/",
            "/1",
            "1/2/3",
            "x/1",
            "1/-1",
            "+1/1",
            "123456789/0",
            "0/ 1",
            "1",
        ] {
            let err = text.parse::<WalPosition>().unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{text}: {err}");
        }
        assert!(Session::resume("DROP TABLE x").is_err());
    }

    #[test]
    fn a_session_keeps_its_latest_position() {
        let session = Session::new();
        assert_eq!(session.token(), "");
        session.observe(WalPosition::from_u64(0x200));
        session.observe(WalPosition::from_u64(0x100));
        assert_eq!(session.token(), "0/200");
        let resumed = Session::resume(&session.token()).unwrap();
        assert_eq!(resumed.position(), session.position());
        assert_eq!(Session::resume("").unwrap().position(), None);
        assert_eq!(
            WalPosition::from_u64(10).bytes_after(WalPosition::from_u64(30)),
            0
        );
    }
}

#[cfg(test)]
mod lost_track_tests {
    use super::*;

    #[test]
    fn a_known_position_replaces_an_unknown_one() {
        let session = Session::new();
        session.observe(WalPosition::from_u64(0x500));
        session.lost_track();
        assert_eq!(session.position(), Some(WalPosition::UNKNOWN));
        session.observe(WalPosition::from_u64(0x600));
        assert_eq!(session.position(), Some(WalPosition::from_u64(0x600)));
        session.observe(WalPosition::from_u64(0x100));
        assert_eq!(session.position(), Some(WalPosition::from_u64(0x600)));
    }
}
