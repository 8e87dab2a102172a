//! Settings of read replicas and read-your-writes ([`ReplicaConfig`]).

use std::time::Duration;

use reposmith_core::config::Env;
use reposmith_core::{ConnectionUrl, Error, Result};

/// What reads do when no replica may serve them (all down, or all lagging
/// more than [`ReplicaConfig::max_lag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaFallback {
    /// Run on the primary, with a `reposmith.replica` warning event (the default).
    #[default]
    Primary,
    /// Fail with [`Error::Unavailable`] when no replica is up and within
    /// `max_lag`, instead of moving the whole read load to the primary.
    /// Single reads still run there: a session read whose wait passed its
    /// deadline, and a read retried after a replica failed it.
    Fail,
}

/// Streaming replicas that take reads off the primary.
///
/// # Defaults and why
///
/// | setting | default | why |
/// |---|---|---|
/// | `urls` | none | no replica: every read on the primary |
/// | `max_lag` | 16 MiB of WAL | one WAL segment; a replica further behind is skipped until it catches up |
/// | `probe_interval` | 1 s | lag and health are at most this old when a read is routed |
/// | `probe_timeout` | 1 s | a stalled replica is marked down after this, never waited on longer |
/// | `read_your_writes_timeout` | 1 s | a read that must see a session's write waits this long on a replica, then runs on the primary |
/// | `fallback` | `Primary` | no replica available must not fail reads the primary can serve |
///
/// Lag is measured in bytes of WAL (`pg_current_wal_lsn()` on the primary
/// minus `pg_last_wal_replay_lsn()` on the replica), not with
/// `pg_stat_replication.replay_lag`, which reads near zero while replay is
/// stalled and nothing new arrives.
///
/// # Environment
///
/// `REPOSMITH_PG_REPLICA_URLS` (comma-separated URLs), and optionally
/// `REPOSMITH_PG_REPLICA_MAX_LAG` (bytes), `REPOSMITH_PG_REPLICA_PROBE_INTERVAL`,
/// `REPOSMITH_PG_REPLICA_PROBE_TIMEOUT`, `REPOSMITH_PG_READ_YOUR_WRITES_TIMEOUT`
/// and `REPOSMITH_PG_REPLICA_FALLBACK` (`primary` or `fail`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReplicaConfig {
    /// The replicas' URLs (`Debug` masks their passwords). Each must be a
    /// standby of the primary: connect refuses a server that is not in
    /// recovery or belongs to another cluster (another system identifier).
    pub urls: Vec<ConnectionUrl>,
    /// Most bytes of WAL a replica may be behind the primary and still serve reads.
    pub max_lag: u64,
    /// How often each replica's health and lag are measured.
    pub probe_interval: Duration,
    /// Longest wait for one probe of one replica.
    pub probe_timeout: Duration,
    /// Longest wait on a replica for a session's writes to be replayed.
    pub read_your_writes_timeout: Duration,
    /// What reads do when no replica may serve them.
    pub fallback: ReplicaFallback,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            urls: Vec::new(),
            max_lag: 16 * 1024 * 1024,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            read_your_writes_timeout: Duration::from_secs(1),
            fallback: ReplicaFallback::Primary,
        }
    }
}

impl ReplicaConfig {
    /// Replicas at `urls`, with the documented defaults.
    pub fn new<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        ReplicaConfig {
            urls: urls.into_iter().map(ConnectionUrl::new).collect(),
            ..ReplicaConfig::default()
        }
    }

    /// Sets `max_lag` (bytes of WAL).
    pub fn max_lag(mut self, bytes: u64) -> Self {
        self.max_lag = bytes;
        self
    }

    /// Sets `probe_interval`.
    pub fn probe_interval(mut self, every: Duration) -> Self {
        self.probe_interval = every;
        self
    }

    /// Sets `probe_timeout`.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Sets `read_your_writes_timeout`.
    pub fn read_your_writes_timeout(mut self, timeout: Duration) -> Self {
        self.read_your_writes_timeout = timeout;
        self
    }

    /// Sets `fallback`.
    pub fn fallback(mut self, fallback: ReplicaFallback) -> Self {
        self.fallback = fallback;
        self
    }

    pub(crate) fn apply_env(&mut self, env: &Env<'_>) -> Result<()> {
        if let Some(urls) = env.get("REPOSMITH_PG_REPLICA_URLS") {
            self.urls = urls
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(ConnectionUrl::new)
                .collect();
        }
        self.max_lag = env
            .number("REPOSMITH_PG_REPLICA_MAX_LAG")?
            .unwrap_or(self.max_lag);
        let interval = env.duration("REPOSMITH_PG_REPLICA_PROBE_INTERVAL")?;
        self.probe_interval = interval.unwrap_or(self.probe_interval);
        let timeout = env.duration("REPOSMITH_PG_REPLICA_PROBE_TIMEOUT")?;
        self.probe_timeout = timeout.unwrap_or(self.probe_timeout);
        let wait = env.duration("REPOSMITH_PG_READ_YOUR_WRITES_TIMEOUT")?;
        self.read_your_writes_timeout = wait.unwrap_or(self.read_your_writes_timeout);
        if let Some(fallback) = env.get("REPOSMITH_PG_REPLICA_FALLBACK") {
            self.fallback = match fallback.trim().to_ascii_lowercase().as_str() {
                "primary" => ReplicaFallback::Primary,
                "fail" => ReplicaFallback::Fail,
                other => {
                    return Err(Error::config(
                        "REPOSMITH_PG_REPLICA_FALLBACK",
                        format!("`{other}` is neither `primary` nor `fail`"),
                    ));
                }
            };
        }
        Ok(())
    }

    /// Rejects settings the router cannot honour, naming the setting.
    pub(crate) fn validate(&self, primary: &ConnectionUrl) -> Result<()> {
        let fail = |reason: String| Err(Error::config("postgresql replicas", reason));
        if self.probe_interval < Duration::from_millis(10) {
            return fail("probe_interval must be at least 10ms".into());
        }
        if self.probe_timeout.is_zero() || self.read_your_writes_timeout.is_zero() {
            return fail(
                "probe_timeout and read_your_writes_timeout must be greater than zero".into(),
            );
        }
        for (i, url) in self.urls.iter().enumerate() {
            if url.expose() == primary.expose() {
                return fail(format!("replica {url} is the primary's own URL"));
            }
            if self.urls[..i].iter().any(|u| u.expose() == url.expose()) {
                return fail(format!("replica {url} is listed twice"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env<'static> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Env::from_fn(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn replicas_come_from_the_environment() {
        let mut config = ReplicaConfig::default();
        let vars = env(&[
            (
                "REPOSMITH_PG_REPLICA_URLS",
                "postgres://u:secret@a:5433/db, postgres://u:secret@b:5433/db,",
            ),
            ("REPOSMITH_PG_REPLICA_MAX_LAG", "1024"),
            ("REPOSMITH_PG_READ_YOUR_WRITES_TIMEOUT", "250ms"),
            ("REPOSMITH_PG_REPLICA_FALLBACK", "Fail"),
        ]);
        config.apply_env(&vars).unwrap();
        assert_eq!(config.urls.len(), 2);
        assert_eq!(config.max_lag, 1024);
        assert_eq!(config.read_your_writes_timeout, Duration::from_millis(250));
        assert_eq!(config.fallback, ReplicaFallback::Fail);
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn bad_replica_settings_are_named() {
        let mut config = ReplicaConfig::default();
        let bad = env(&[("REPOSMITH_PG_REPLICA_FALLBACK", "sometimes")]);
        let err = config.apply_env(&bad).unwrap_err().to_string();
        assert!(err.contains("REPOSMITH_PG_REPLICA_FALLBACK"), "{err}");
        let primary = ConnectionUrl::new("postgres://u:pw@p:5432/db");
        let twice = ReplicaConfig::new(["postgres://u:pw@r:5432/db", "postgres://u:pw@r:5432/db"]);
        let err = twice.validate(&primary).unwrap_err().to_string();
        assert!(
            err.contains("listed twice") && !err.contains("pw@"),
            "{err}"
        );
        let own = ReplicaConfig::new(["postgres://u:pw@p:5432/db"]);
        assert!(own.validate(&primary).is_err());
        let slow = ReplicaConfig::default().probe_interval(Duration::ZERO);
        assert!(slow.validate(&primary).is_err());
    }
}
