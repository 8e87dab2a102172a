//! Pool and session settings for PostgreSQL, from code or from the environment.
//!
//! # Defaults and why
//!
//! | setting | default | why |
//! |---|---|---|
//! | `max_connections` | 10 | sqlx's default; 10 per process × a few replicas stays far below Postgres' 100 |
//! | `min_connections` | 0 | nothing held open for an idle service; the first queries pay one connect each |
//! | `acquire_timeout` | 5 s | fail fast with [`Error::PoolTimeout`](reposmith_core::Error::PoolTimeout) instead of sqlx's 30 s queue |
//! | `connect_timeout` | 5 s | a host that drops SYNs must not hang startup |
//! | `idle_timeout` | 10 min | returns connections above `min_connections` to the server |
//! | `max_lifetime` | 30 min | recycles connections so server-side memory and pooler state do not grow forever |
//! | `test_before_acquire` | **false** | a ping before every acquire cost about 30 % of get-by-id throughput on our 2-core test machine. Repositories use reposmith's own pool (see `pool.rs`), which returns a connection without a round trip only when its last statement ended cleanly and closes it otherwise, and `idle_timeout`/`max_lifetime` retire old ones, so a connection the server killed costs at most one failed statement ([`Error::ConnectionLost`](reposmith_core::Error::ConnectionLost)); sqlx's own pool, kept for raw SQL, pings on every release regardless |
//! | `statement_cache_capacity` | 256 | repositories prepare one statement per entity and operation; 256 covers a few dozen entities without evicting (0, whatever is set, with [`PoolerMode::Transaction`]) |
//! | `statement_timeout` | 30 s | every statement is bounded; migrations set their own |
//! | `application_name` | `reposmith` | shows in `pg_stat_activity` |
//! | `ef_search` | pgvector's 40 | the `hnsw.ef_search` searches get without a transaction of their own |
//! | `recall` | off | the recall monitor and `ef_search` tuner ([`RecallConfig`]; its table there) |
//! | `iterative_scan` | true | a filtered vector search returns `k` rows whenever `k` rows match (pgvector 0.8 iterative index scans, `relaxed_order`; hits are re-sorted exactly) |
//! | `clock` | the system clock | the time repositories stamp rows with; [`Clock::fixed`] in tests |
//! | `max_bind_bytes` | 256 MiB | the most one statement may bind (and one row of a `COPY` may carry); more is [`Error::TooLarge`](reposmith_core::Error::TooLarge) before anything is sent, instead of an out-of-memory or "invalid message length" from a server whose protocol messages stop at 1 GiB; see [`PgConfig::max_bind_bytes`](field@PgConfig::max_bind_bytes) |
//!
//! # Coming from SQLAlchemy
//!
//! | SQLAlchemy `create_engine(...)` | here |
//! |---|---|
//! | `pool_size` (connections kept open) | `min_connections` |
//! | `pool_size + max_overflow` (the ceiling) | `max_connections` |
//! | overflow connections closed on return | `idle_timeout` closes idle connections above `min_connections` |
//! | `pool_timeout` | `acquire_timeout` |
//! | `pool_recycle` | `max_lifetime` |
//! | `pool_pre_ping=True` | `test_before_acquire = true` (off by default, see above) |
//! | `connect_args={"connect_timeout": ..}` | `connect_timeout` |
//!
//! # Environment
//!
//! `DATABASE_URL` (required), and optionally `REPOSMITH_PG_MAX_CONNECTIONS`,
//! `REPOSMITH_PG_MIN_CONNECTIONS`, `REPOSMITH_PG_ACQUIRE_TIMEOUT`,
//! `REPOSMITH_PG_CONNECT_TIMEOUT`, `REPOSMITH_PG_IDLE_TIMEOUT`,
//! `REPOSMITH_PG_MAX_LIFETIME`, `REPOSMITH_PG_STATEMENT_TIMEOUT`,
//! `REPOSMITH_PG_STATEMENT_CACHE`, `REPOSMITH_PG_TEST_BEFORE_ACQUIRE`,
//! `REPOSMITH_PG_ITERATIVE_SCAN`, `REPOSMITH_PG_EF_SEARCH`,
//! `REPOSMITH_PG_MAX_BIND_BYTES` (a number of bytes), and the recall
//! monitor's `REPOSMITH_PG_RECALL_*` (see [`RecallConfig`]), the read
//! replicas' `REPOSMITH_PG_REPLICA_*` (see [`ReplicaConfig`]) and
//! `REPOSMITH_PG_POOLER` (`transaction` or `none`, see [`PoolerMode`]),
//! `REPOSMITH_MIGRATION_DATABASE_URL` (the owner's URL migrations use, see
//! [`PgConfig::migration_url`]) and `REPOSMITH_ALLOW_PLAINTEXT` (see
//! [`PgConfig::allow_plaintext`]).
//! Durations read `500ms`, `5s`, `2m`, `1h`.

use std::time::Duration;

use reposmith_core::config::Env;
use reposmith_core::{Clock, ConnectionUrl, Error, Result};

use crate::recall::RecallConfig;
use crate::replica::ReplicaConfig;
use crate::unit::IsolationLevel;

/// How to reach PostgreSQL and how to pool connections to it.
///
/// `Debug` prints the URL with its password masked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database?sslmode=...`
    pub url: ConnectionUrl,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Connections the pool keeps open even when idle.
    pub min_connections: u32,
    /// Longest wait for a free connection before [`Error::PoolTimeout`].
    pub acquire_timeout: Duration,
    /// Longest wait for a new connection to be established.
    pub connect_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Connections are closed after this age.
    pub max_lifetime: Option<Duration>,
    /// Ping each connection before handing it out (sqlx's default; off here, see the module docs).
    pub test_before_acquire: bool,
    /// Prepared statements cached per connection.
    pub statement_cache_capacity: usize,
    /// Server-side `statement_timeout` for every session (behind a
    /// transaction pooler, every transaction); `None` leaves the server's setting.
    pub statement_timeout: Option<Duration>,
    /// `application_name` reported to the server.
    pub application_name: String,
    /// Sessions start with pgvector 0.8's iterative index scans on
    /// (`hnsw.iterative_scan` and `ivfflat.iterative_scan` = `relaxed_order`),
    /// so a filtered vector search keeps scanning the index until it has `k`
    /// matching rows (up to `hnsw.max_scan_tuples`, 20,000 by default)
    /// instead of returning fewer. Searches re-sort the hits exactly, which is
    /// what relaxed order asks of the query. Applies to raw SQL on
    /// [`PgBackend::pool`](crate::PgBackend::pool) too. Applied only when the
    /// database has pgvector 0.8 or newer when the backend connects (an older
    /// pgvector loaded at server start would refuse connections naming the
    /// setting); install or upgrade the extension, then reconnect.
    pub iterative_scan: bool,
    /// Sessions start with this `hnsw.ef_search` (pgvector's default: 40).
    /// A search asking for this same value then runs as one statement; any
    /// other value costs a short transaction around the search to scope the
    /// setting (measured 1.2x the throughput without it, `cargo xtask bench
    /// vector`). Set it to the value most searches want.
    pub ef_search: Option<u32>,
    /// The recall monitor and `ef_search`/`probes` tuner; off by default.
    pub recall: RecallConfig,
    /// Isolation level of the units [`PgBackend::transaction`](crate::PgBackend::transaction)
    /// runs (default SERIALIZABLE: a unit that reads, decides and writes is
    /// then aborted as retryable instead of acting on stale reads).
    /// [`PgBackend::begin`](crate::PgBackend::begin) starts at READ COMMITTED;
    /// [`PgBackend::begin_with`](crate::PgBackend::begin_with) takes a level.
    pub transaction_isolation: IsolationLevel,
    /// Streaming replicas that take reads off the primary (none by
    /// default); see [`ReplicaConfig`] and the crate docs, "Read replicas".
    pub replicas: ReplicaConfig,
    /// How statements are sent: straight to PostgreSQL (the default), or in
    /// the only shape that is correct behind a transaction pooler such as
    /// PgBouncer in `pool_mode = transaction` ([`PoolerMode`]).
    pub pooler: PoolerMode,
    /// The URL migrations run with, when it differs from `url`: the schema
    /// owner's, while `url` names an application role that cannot run DDL
    /// (see the crate docs, "TLS and least privilege"). `None`: migrations
    /// use `url`. Read from `REPOSMITH_MIGRATION_DATABASE_URL`.
    pub migration_url: Option<ConnectionUrl>,
    /// Connect without TLS to a host other than this machine (`false` by
    /// default: such a URL is refused, see the crate docs).
    /// `REPOSMITH_ALLOW_PLAINTEXT=1` in the process environment allows it
    /// for every config, however built.
    pub allow_plaintext: bool,
    /// The most bytes one statement may bind, counted as PostgreSQL's Bind
    /// message carries them: for each value a 4-byte length word and its
    /// binary form (text and JSON as UTF-8, `jsonb` with its one-byte
    /// version, arrays with their 20-byte header and a length word per
    /// element, vectors in pgvector's binary form, NULL as the length word
    /// alone). A statement that would bind more is refused with
    /// [`Error::TooLarge`] before anything is sent: a single write, a
    /// filter's operands, a search. `insert_many` splits its `VALUES`
    /// batches to stay under it (still all or nothing); binary `COPY`
    /// (`insert_many` from 200 rows, `bulk_load`) streams in 1 MiB chunks
    /// and holds each *row* to it, refusing a larger one by its index with
    /// nothing written. Default 256 MiB; at most [`MAX_BIND_BYTES_CEILING`]
    /// (PostgreSQL refuses any message from 1 GiB, and the statement text
    /// travels in the same message).
    pub max_bind_bytes: usize,
    /// Where repositories take the time they stamp `created_at`,
    /// `updated_at` and soft deletes with, and the cutoffs of
    /// `purge_deleted` and `purge_expired` (the system clock by default;
    /// [`Clock::fixed`] in tests makes those stamps exact). Never read from
    /// the environment. See [`reposmith_core::clock`].
    pub clock: Clock,
}

/// The default of [`PgConfig::max_bind_bytes`](field@PgConfig::max_bind_bytes): 256 MiB.
pub const DEFAULT_MAX_BIND_BYTES: usize = 256 << 20;

/// The largest accepted [`PgConfig::max_bind_bytes`](field@PgConfig::max_bind_bytes):
/// 1 GiB less 64 MiB, room for the statement text and the message's
/// framing under PostgreSQL's 1 GiB message limit.
pub const MAX_BIND_BYTES_CEILING: usize = (1 << 30) - (64 << 20);

/// Whether a transaction pooler (PgBouncer in `pool_mode = transaction`,
/// or a service built on it) sits between the application and PostgreSQL.
///
/// # Behind PgBouncer
///
/// Set [`PoolerMode::Transaction`] (`REPOSMITH_PG_POOLER=transaction`)
/// there. What it does, what it costs, and what [`PoolerMode::Direct`]
/// detects and refuses are in the crate docs, "Behind PgBouncer". In
/// short: every pool operation is `BEGIN` + the session settings as `SET
/// LOCAL`, its statements (all unnamed), `COMMIT`; a get-by-id takes 4
/// round trips instead of 1 (roughly a third of Direct's rate on one
/// connection to a local server); and Direct mode refuses to connect
/// through a pooler, naming this setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolerMode {
    /// Sessions are PostgreSQL's own: named prepared statements are cached
    /// per connection and settings are set once per session (the default).
    /// Connecting through a pooler is refused in this mode ([`Error::Config`]
    /// naming this setting), because named statements behind a transaction
    /// pooler can return another query's rows: the connect probe sends a
    /// setting as a startup option, which a pooler refuses (PgBouncer:
    /// "unsupported startup parameter: options") or drops. A session-mode
    /// PgBouncer refuses startup options too; use `Transaction` there.
    #[default]
    Direct,
    /// Behind a transaction pooler: every statement is unnamed and every
    /// pool operation runs inside an explicit transaction, the session
    /// settings (those of this config, and every `-c name=value` of the
    /// URL's `options`) are set per transaction (`SET LOCAL`) and never sent
    /// at connect, and nothing relies on `LISTEN` (the outbox relay polls).
    /// `statement_cache_capacity` is ignored (no statement is cached), and
    /// `bulk_load` is refused: it needs a session of its own. Also correct
    /// on a direct connection, at the cost above.
    Transaction,
}

impl PgConfig {
    /// Settings for `url` with the documented defaults.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: ConnectionUrl::new(url),
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            test_before_acquire: false,
            statement_cache_capacity: 256,
            statement_timeout: Some(Duration::from_secs(30)),
            application_name: "reposmith".to_owned(),
            iterative_scan: true,
            ef_search: None,
            recall: RecallConfig::default(),
            transaction_isolation: IsolationLevel::Serializable,
            replicas: ReplicaConfig::default(),
            pooler: PoolerMode::Direct,
            migration_url: None,
            allow_plaintext: false,
            max_bind_bytes: DEFAULT_MAX_BIND_BYTES,
            clock: Clock::system(),
        }
    }

    /// Settings from `DATABASE_URL` and the `REPOSMITH_PG_*` variables; `None` when
    /// `DATABASE_URL` is unset.
    pub fn from_env(env: &Env<'_>) -> Result<Option<Self>> {
        let Some(url) = env.get("DATABASE_URL") else {
            return Ok(None);
        };
        let mut config = PgConfig::new(url);
        config.apply_env(env)?;
        config.validate()?;
        Ok(Some(config))
    }

    fn apply_env(&mut self, env: &Env<'_>) -> Result<()> {
        let max = env.number("REPOSMITH_PG_MAX_CONNECTIONS")?;
        self.max_connections = max.unwrap_or(self.max_connections);
        let min = env.number("REPOSMITH_PG_MIN_CONNECTIONS")?;
        self.min_connections = min.unwrap_or(self.min_connections);
        let acquire = env.duration("REPOSMITH_PG_ACQUIRE_TIMEOUT")?;
        self.acquire_timeout = acquire.unwrap_or(self.acquire_timeout);
        let connect = env.duration("REPOSMITH_PG_CONNECT_TIMEOUT")?;
        self.connect_timeout = connect.unwrap_or(self.connect_timeout);
        let cache = env.number("REPOSMITH_PG_STATEMENT_CACHE")?;
        self.statement_cache_capacity = cache.unwrap_or(self.statement_cache_capacity);
        let test = env.flag("REPOSMITH_PG_TEST_BEFORE_ACQUIRE")?;
        self.test_before_acquire = test.unwrap_or(self.test_before_acquire);
        self.idle_timeout = env
            .duration("REPOSMITH_PG_IDLE_TIMEOUT")?
            .or(self.idle_timeout);
        self.max_lifetime = env
            .duration("REPOSMITH_PG_MAX_LIFETIME")?
            .or(self.max_lifetime);
        let ef_search = env.number("REPOSMITH_PG_EF_SEARCH")?;
        self.ef_search = ef_search.or(self.ef_search);
        let iterative = env.flag("REPOSMITH_PG_ITERATIVE_SCAN")?;
        self.iterative_scan = iterative.unwrap_or(self.iterative_scan);
        let bind = env.number("REPOSMITH_PG_MAX_BIND_BYTES")?;
        self.max_bind_bytes = bind.unwrap_or(self.max_bind_bytes);
        let statement = env.duration("REPOSMITH_PG_STATEMENT_TIMEOUT")?;
        self.statement_timeout = statement.or(self.statement_timeout);
        if let Some(pooler) = env.get("REPOSMITH_PG_POOLER") {
            self.pooler = match pooler.trim().to_ascii_lowercase().as_str() {
                "" | "none" | "direct" => PoolerMode::Direct,
                "transaction" => PoolerMode::Transaction,
                other => {
                    return Err(Error::config(
                        "REPOSMITH_PG_POOLER",
                        format!("`{other}` is not `transaction` or `none`"),
                    ));
                }
            };
        }
        if let Some(url) = env.get("REPOSMITH_MIGRATION_DATABASE_URL") {
            self.migration_url = Some(ConnectionUrl::new(url));
        }
        let plaintext = env.flag(reposmith_core::tls::ALLOW_PLAINTEXT_ENV)?;
        self.allow_plaintext = plaintext.unwrap_or(self.allow_plaintext);
        self.replicas.apply_env(env)?;
        self.recall.apply_env(env)
    }

    /// Rejects settings the pool cannot honour, naming the setting, and
    /// URLs (primary, replicas, migrations) that would go unencrypted to
    /// another machine unless [`PgConfig::allow_plaintext`] (see the crate
    /// docs, "TLS and least privilege").
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| Err(Error::config("postgresql", reason));
        if self.max_connections == 0 {
            return fail("max_connections must be at least 1".into());
        }
        if self.min_connections > self.max_connections {
            return fail(format!(
                "min_connections ({}) exceeds max_connections ({})",
                self.min_connections, self.max_connections
            ));
        }
        if self.acquire_timeout.is_zero() || self.connect_timeout.is_zero() {
            return fail("acquire_timeout and connect_timeout must be greater than zero".into());
        }
        if let Some(ef) = self.ef_search.filter(|ef| !(1..=1000).contains(ef)) {
            return fail(format!("ef_search must be between 1 and 1000, got {ef}"));
        }
        if !(1..=MAX_BIND_BYTES_CEILING).contains(&self.max_bind_bytes) {
            return fail(format!(
                "max_bind_bytes must be between 1 and {MAX_BIND_BYTES_CEILING} \
                 (PostgreSQL refuses messages from 1 GiB), got {}",
                self.max_bind_bytes
            ));
        }
        self.replicas.validate(&self.url)?;
        self.recall.validate(self.max_connections)?;
        let urls = std::iter::once(&self.url)
            .chain(&self.replicas.urls)
            .chain(&self.migration_url);
        for url in urls {
            crate::tls::check(url, self.allow_plaintext)?;
        }
        Ok(())
    }

    /// The URL migrations run with: [`PgConfig::migration_url`] when set,
    /// else `url`.
    pub fn migration_connection_url(&self) -> &ConnectionUrl {
        self.migration_url.as_ref().unwrap_or(&self.url)
    }

    /// Sets the schema owner's URL that migrations run with (see
    /// [`PgConfig::migration_url`](field@PgConfig::migration_url)).
    pub fn migration_url(mut self, url: impl Into<String>) -> Self {
        self.migration_url = Some(ConnectionUrl::new(url));
        self
    }

    /// Allows (or, `false`, refuses again) URLs that would go unencrypted
    /// to a host other than this machine: for a private network or a
    /// sidecar that encrypts for you. Loopback and Unix sockets never need
    /// it.
    pub fn allow_plaintext(mut self, allow: bool) -> Self {
        self.allow_plaintext = allow;
        self
    }

    /// Sets the read replicas (see [`ReplicaConfig`]).
    pub fn replicas(mut self, replicas: ReplicaConfig) -> Self {
        self.replicas = replicas;
        self
    }

    /// Sets the pooler mode (see [`PoolerMode`]).
    pub fn pooler(mut self, mode: PoolerMode) -> Self {
        self.pooler = mode;
        self
    }

    /// Sets the isolation level of retried units (see [`PgConfig::transaction_isolation`]).
    pub fn transaction_isolation(mut self, isolation: IsolationLevel) -> Self {
        self.transaction_isolation = isolation;
        self
    }

    /// Sets `max_connections`.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets `min_connections`.
    pub fn min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// Sets `acquire_timeout`.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets `connect_timeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the sessions' `hnsw.ef_search` (see [`PgConfig::ef_search`](field@PgConfig::ef_search)).
    pub fn ef_search(mut self, ef_search: u32) -> Self {
        self.ef_search = Some(ef_search);
        self
    }

    /// Sets the recall monitor's settings (see [`RecallConfig`]).
    pub fn recall(mut self, recall: RecallConfig) -> Self {
        self.recall = recall;
        self
    }

    /// Turns pgvector's iterative index scans for filtered searches on or off.
    pub fn iterative_scan(mut self, on: bool) -> Self {
        self.iterative_scan = on;
        self
    }

    /// Sets `statement_timeout` (`None`: the server's setting).
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets `max_bind_bytes` (see [`PgConfig::max_bind_bytes`](field@PgConfig::max_bind_bytes)).
    pub fn max_bind_bytes(mut self, bytes: usize) -> Self {
        self.max_bind_bytes = bytes;
        self
    }

    /// Sets the clock repositories stamp rows with (see [`PgConfig::clock`](field@PgConfig::clock)).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets `application_name`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults_and_names_bad_values() {
        let vars = [
            ("DATABASE_URL", "postgres://u:pw@127.0.0.1/db"),
            ("REPOSMITH_PG_MAX_CONNECTIONS", "32"),
            ("REPOSMITH_PG_ACQUIRE_TIMEOUT", "250ms"),
        ];
        let env = Env::from_fn(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        });
        let config = PgConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(config.max_connections, 32);
        assert_eq!(config.acquire_timeout, Duration::from_millis(250));
        assert!(!format!("{config:?}").contains("pw"));

        let bad = Env::from_fn(|k| match k {
            "DATABASE_URL" => Some("postgres://127.0.0.1/db".into()),
            "REPOSMITH_PG_MIN_CONNECTIONS" => Some("50".into()),
            _ => None,
        });
        let err = PgConfig::from_env(&bad).unwrap_err().to_string();
        assert!(
            err.contains("min_connections (50) exceeds max_connections (10)"),
            "{err}"
        );
    }

    #[test]
    fn env_reads_the_migration_url_and_the_plaintext_opt_in() {
        if reposmith_core::tls::plaintext_allowed_by_env() {
            return; // REPOSMITH_ALLOW_PLAINTEXT=1 in this process allows it.
        }
        let vars = [
            ("DATABASE_URL", "postgres://app:pw@db.internal/rag"),
            (
                "REPOSMITH_MIGRATION_DATABASE_URL",
                "postgres://owner:ownerpw@db.internal/rag",
            ),
        ];
        let lookup = |extra: Option<(&'static str, &'static str)>| {
            Env::from_fn(move |k| {
                vars.iter()
                    .chain(extra.iter())
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        // Both URLs are plaintext to another host: refused by default,
        // without either password in the message.
        let err = PgConfig::from_env(&lookup(None)).unwrap_err().to_string();
        assert!(
            err.contains("db.internal") && err.contains("sslmode"),
            "{err}"
        );
        assert!(!err.contains("pw"), "{err}");
        let allowed = lookup(Some(("REPOSMITH_ALLOW_PLAINTEXT", "1")));
        let config = PgConfig::from_env(&allowed).unwrap().unwrap();
        assert!(config.allow_plaintext);
        assert_eq!(
            config.migration_connection_url().redacted(),
            "postgres://owner:***@db.internal/rag"
        );
        assert_eq!(config.url.redacted(), "postgres://app:***@db.internal/rag");
        assert!(!format!("{config:?}").contains("ownerpw"));
        // Without a migration URL, migrations use the application's.
        let plain = PgConfig::new("postgres://app@127.0.0.1/rag");
        assert_eq!(plain.migration_connection_url(), &plain.url);
    }

    #[test]
    fn every_url_of_the_config_is_held_to_the_plaintext_policy() {
        if reposmith_core::tls::plaintext_allowed_by_env() {
            return; // REPOSMITH_ALLOW_PLAINTEXT=1 in this process allows it.
        }
        let local = "postgres://app:pw@127.0.0.1/rag";
        let remote = "postgres://app:pw@10.0.0.9/rag";
        assert!(PgConfig::new(local).validate().is_ok());
        assert!(PgConfig::new(remote).validate().is_err());
        assert!(
            PgConfig::new(remote)
                .allow_plaintext(true)
                .validate()
                .is_ok()
        );
        let migration = PgConfig::new(local).migration_url(remote);
        assert!(
            migration
                .validate()
                .unwrap_err()
                .to_string()
                .contains("10.0.0.9")
        );
        let replica = PgConfig::new(local).replicas(ReplicaConfig::new([remote]));
        assert!(
            replica
                .validate()
                .unwrap_err()
                .to_string()
                .contains("10.0.0.9")
        );
    }

    #[test]
    fn the_bind_cap_comes_from_the_environment_and_is_bounded() {
        let with = |value: &'static str| {
            Env::from_fn(move |k| match k {
                "DATABASE_URL" => Some("postgres://127.0.0.1/db".into()),
                "REPOSMITH_PG_MAX_BIND_BYTES" => Some(value.into()),
                _ => None,
            })
        };
        let config = PgConfig::from_env(&with("4096")).unwrap().unwrap();
        assert_eq!(config.max_bind_bytes, 4096);
        assert_eq!(
            PgConfig::new("postgres://127.0.0.1/db").max_bind_bytes,
            DEFAULT_MAX_BIND_BYTES
        );
        for bad in ["0", "1073741824", "64MiB", "-1"] {
            let err = PgConfig::from_env(&with(bad)).unwrap_err().to_string();
            assert!(
                err.contains("max_bind_bytes") || err.contains("REPOSMITH_PG_MAX_BIND_BYTES"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unset_url_means_not_configured() {
        assert!(
            PgConfig::from_env(&Env::from_fn(|_| None))
                .unwrap()
                .is_none()
        );
    }
}
