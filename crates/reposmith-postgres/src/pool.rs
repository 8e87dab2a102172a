//! The connection pool repositories run on.
//!
//! Written here rather than using sqlx's `PgPool` because sqlx (0.8.6 and
//! 0.9.0) pings the server every time a connection goes back to its pool,
//! with no option to turn it off: measured with `cargo xtask bench`, a
//! get-by-id on `&PgPool` ran at 7.9k op/s against 13.7k on a held
//! connection. This pool returns a connection without a round trip when
//! the last statement on it finished cleanly (a result or a server error,
//! after which the server is ready for the next query), and otherwise —
//! an I/O error, a statement cancelled mid-flight, a unit of work dropped
//! uncommitted — closes it instead of reusing it. Idle connections past
//! `idle_timeout` or `max_lifetime` are closed when next met; a connection
//! the server killed costs one failed statement ([`Error::ConnectionLost`]).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use reposmith_core::{Backend, Error};
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgSeverity};
use sqlx::{Connection, PgConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::PgConfig;
use crate::pooler::TransactionSettings;

/// Connections for repositories: at most `max_connections`, bounded waits.
pub(crate) struct ConnectionPool {
    /// How new connections open; replaced when the session settings change
    /// (see [`ConnectionPool::set_options`]).
    options: RwLock<PgConnectOptions>,
    /// Connections opened before this instant have outdated session settings
    /// and are closed when next met.
    stale_before: Mutex<Option<Instant>>,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    open: AtomicU32,
    closed: AtomicBool,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    min_connections: u32,
    test_before_acquire: bool,
    /// Behind a transaction pooler, the session settings each operation
    /// replays after its `BEGIN` (see the `pooler` module); `None` when
    /// sessions get them at connect.
    transaction: Option<TransactionSettings>,
    /// The most bytes one statement on these connections may bind
    /// ([`PgConfig::max_bind_bytes`](field@crate::PgConfig::max_bind_bytes)).
    max_bind_bytes: usize,
}

struct Idle {
    connection: PgConnection,
    born: Instant,
    since: Instant,
    /// The session's `reposmith.tenant` (see [`PooledConnection::tenant`]).
    tenant: Option<Arc<str>>,
}

/// Why no connection was handed out.
pub(crate) enum AcquireError {
    /// Every permit stayed taken for the acquire timeout.
    Timeout,
    /// The pool was closed.
    Closed,
    /// A new connection could not be opened.
    Connect(sqlx::Error),
}

impl ConnectionPool {
    pub(crate) fn new(
        options: PgConnectOptions,
        transaction: Option<TransactionSettings>,
        config: &PgConfig,
    ) -> Arc<Self> {
        Arc::new(ConnectionPool {
            options: RwLock::new(options),
            stale_before: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(config.max_connections as usize)),
            open: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            acquire_timeout: config.acquire_timeout,
            idle_timeout: config.idle_timeout,
            max_lifetime: config.max_lifetime,
            min_connections: config.min_connections,
            test_before_acquire: config.test_before_acquire,
            transaction,
            max_bind_bytes: config.max_bind_bytes,
        })
    }

    /// The most bytes one statement on these connections may bind.
    pub(crate) fn max_bind_bytes(&self) -> usize {
        self.max_bind_bytes
    }

    /// Gives every session from now on `settings` too: as startup options
    /// of new connections (`base` with them; open ones are closed when next
    /// met), or behind a transaction pooler in each transaction.
    pub(crate) fn add_settings(&self, base: PgConnectOptions, settings: &[(&str, &str)]) {
        match &self.transaction {
            Some(transaction) => transaction.add(settings),
            None => self.set_options(base.options(settings.iter().copied())),
        }
    }

    /// The options new connections open with.
    fn options(&self) -> PgConnectOptions {
        self.options
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Opens every later connection with `options`; connections already
    /// open are closed when next met (idle now, in use when given back), so
    /// no session keeps the old settings.
    pub(crate) fn set_options(&self, options: PgConnectOptions) {
        *self.options.write().unwrap_or_else(|p| p.into_inner()) = options;
        *self.stale_before.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.flush_idle();
    }

    /// Keeps an already open connection (the connect-time probe) for later use.
    pub(crate) fn adopt(&self, connection: PgConnection) {
        self.open.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        self.idle_list().push(Idle {
            connection,
            born: now,
            since: now,
            tenant: None,
        });
    }

    /// An idle connection or a new one, within the acquire timeout.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<PooledConnection, AcquireError> {
        let deadline = Instant::now() + self.acquire_timeout;
        let permit =
            tokio::time::timeout_at(deadline.into(), Arc::clone(&self.permits).acquire_owned())
                .await
                .map_err(|_| AcquireError::Timeout)?
                .map_err(|_| AcquireError::Closed)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(AcquireError::Closed);
        }
        while let Some(mut idle) = self.take_fresh_idle() {
            if self.test_before_acquire {
                // Uncounted while pinged, so a cancelled acquire that drops it
                // here leaves the count right.
                self.open.fetch_sub(1, Ordering::Relaxed);
                let ping = tokio::time::timeout_at(deadline.into(), idle.connection.ping()).await;
                if !matches!(ping, Ok(Ok(()))) {
                    continue;
                }
                self.open.fetch_add(1, Ordering::Relaxed);
            }
            let mut handed = self.hand_out(idle.connection, idle.born, permit);
            handed.tenant = idle.tenant;
            return Ok(handed);
        }
        let options = self.options();
        let connect = PgConnection::connect_with(&options);
        let connection = tokio::time::timeout_at(deadline.into(), connect)
            .await
            .map_err(|_| AcquireError::Timeout)?
            .map_err(AcquireError::Connect)?;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(self.hand_out(connection, Instant::now(), permit))
    }

    /// The most recently used idle connection still within its limits;
    /// older ones met on the way are closed.
    fn take_fresh_idle(&self) -> Option<Idle> {
        loop {
            let idle = self.idle_list().pop()?;
            if self.expired(idle.born, Some(idle.since)) {
                self.open.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            return Some(idle);
        }
    }

    fn expired(&self, born: Instant, idle_since: Option<Instant>) -> bool {
        let stale = self
            .stale_before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|cutoff| born < cutoff);
        let too_old = stale || self.max_lifetime.is_some_and(|max| born.elapsed() >= max);
        // The idle timeout spares the first `min_connections`.
        let above_min = self.size() > self.min_connections;
        let idle_too_long = match (self.idle_timeout, idle_since) {
            (Some(max), Some(since)) => above_min && since.elapsed() >= max,
            _ => false,
        };
        too_old || idle_too_long
    }

    fn hand_out(
        self: &Arc<Self>,
        connection: PgConnection,
        born: Instant,
        permit: OwnedSemaphorePermit,
    ) -> PooledConnection {
        PooledConnection {
            connection: Some(connection),
            born,
            reusable: true,
            discarded: false,
            transaction_open: false,
            tenant: None,
            local_tenant: None,
            pool: Arc::clone(self),
            _permit: permit,
        }
    }

    fn give_back(&self, connection: PgConnection, born: Instant, tenant: Option<Arc<str>>) {
        if self.closed.load(Ordering::Acquire) || self.expired(born, None) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let mut idle = self.idle_list();
        // Reap here too: under steady load the bottom of the LIFO list is
        // never popped, so its expired connections would otherwise live forever.
        let before = idle.len();
        idle.retain(|c| !self.expired(c.born, Some(c.since)));
        self.open
            .fetch_sub((before - idle.len()) as u32, Ordering::Relaxed);
        idle.push(Idle {
            connection,
            born,
            since: Instant::now(),
            tenant,
        });
    }

    fn idle_list(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens connections until `min_connections` are open, so the first
    /// requests after startup do not each pay a connect.
    pub(crate) async fn warm_up(&self) -> Result<(), sqlx::Error> {
        while self.size() < self.min_connections {
            let connection = PgConnection::connect_with(&self.options()).await?;
            self.adopt(connection);
        }
        Ok(())
    }

    /// Closes every idle connection (after an I/O error suggests a restart).
    pub(crate) fn flush_idle(&self) {
        let idle: Vec<Idle> = std::mem::take(&mut *self.idle_list());
        self.open.fetch_sub(idle.len() as u32, Ordering::Relaxed);
        drop(idle);
    }

    /// Connections open now, idle or in use.
    pub(crate) fn size(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections idle now.
    pub(crate) fn num_idle(&self) -> usize {
        self.idle_list().len()
    }

    /// Refuses new acquires and closes the idle connections; connections in
    /// use close when their operation ends.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        let idle: Vec<Idle> = std::mem::take(&mut *self.idle_list());
        self.open.fetch_sub(idle.len() as u32, Ordering::Relaxed);
        // Dropped, not closed politely: a stalled server must not hang shutdown.
        drop(idle);
    }
}

/// A connection from the backend's pool
/// ([`PgBackend::acquire`](crate::PgBackend::acquire)); it goes back to the
/// pool when dropped if reusable.
///
/// Any mutable use marks it not reusable until [`PooledConnection::settle`]
/// records how the statement ended, so a statement cancelled at an await
/// point leaves a connection that is closed, never reused mid-protocol.
pub struct PooledConnection {
    connection: Option<PgConnection>,
    born: Instant,
    reusable: bool,
    /// Set by [`PooledConnection::discard`]; no later settle undoes it.
    discarded: bool,
    /// A transaction the pooler shape opened is not confirmed ended.
    transaction_open: bool,
    /// The tenant this session's `reposmith.tenant` setting holds (Direct
    /// mode, set session-wide only when it differs from the one wanted);
    /// `None`: unset or empty. Kept while the connection is idle.
    tenant: Option<Arc<str>>,
    /// Behind a transaction pooler: the tenant the pooler shape's
    /// transaction sets locally after `BEGIN` for this operation.
    local_tenant: Option<Arc<str>>,
    pool: Arc<ConnectionPool>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConnection {
    /// Records how a statement on this connection ended: a result or a
    /// server error leave it ready for the next query; anything else (I/O,
    /// protocol, a decode failure mid-stream) gets it closed on release.
    pub fn settle<T>(&mut self, outcome: &Result<T, sqlx::Error>) {
        self.reusable = match outcome {
            Ok(_) => true,
            // An ERROR leaves the session ready for the next query; FATAL and
            // PANIC (terminated by an administrator, server shutting down) end
            // it. 0A000 "cached plan must not change result type" (a migration
            // changed a table under a prepared statement) would fail again on
            // this connection's statement cache, so that one is closed too.
            Err(sqlx::Error::Database(error)) => {
                let severity = error
                    .try_downcast_ref::<PgDatabaseError>()
                    .map(|e| (e.severity(), e.code()));
                match severity {
                    // 25006: a write refused as read-only. The server is a
                    // standby now (a failover demoted it behind the same
                    // address): drop this session and the idle ones, so
                    // new connections find the new primary.
                    Some((PgSeverity::Error, "25006")) => {
                        self.pool.flush_idle();
                        false
                    }
                    Some((PgSeverity::Error, code)) => code != "0A000",
                    Some((PgSeverity::Fatal | PgSeverity::Panic, _)) => {
                        self.pool.flush_idle();
                        false
                    }
                    _ => false,
                }
            }
            Err(sqlx::Error::Io(_)) => {
                // The server or the network went away (a restart, a failover):
                // the idle connections opened before are most likely dead too,
                // so they go now rather than costing one failed statement each.
                self.pool.flush_idle();
                false
            }
            Err(_) => false,
        };
    }

    /// Marks the connection idle and ready, after a statement that ended a transaction.
    pub(crate) fn ready(&mut self) {
        self.reusable = true;
    }

    /// Closes the connection on release instead of pooling it.
    pub fn discard(&mut self) {
        self.discarded = true;
    }

    /// Whether the last statement left the session ready for another.
    pub(crate) fn is_ready(&self) -> bool {
        self.reusable && !self.discarded
    }

    /// The settings each transaction replays behind a transaction pooler;
    /// `None` in Direct mode.
    pub(crate) fn transaction_settings(&self) -> Option<&TransactionSettings> {
        self.pool.transaction.as_ref()
    }

    /// Records that a transaction the pooler shape opened may be open
    /// (`true`) or was confirmed ended; an open one is never pooled.
    pub(crate) fn set_transaction_open(&mut self, open: bool) {
        self.transaction_open = open;
    }

    /// The tenant this session's `reposmith.tenant` holds, if any.
    pub(crate) fn tenant(&self) -> Option<&Arc<str>> {
        self.tenant.as_ref()
    }

    /// Records the session's tenant after a confirmed `set_config`.
    pub(crate) fn set_tenant(&mut self, tenant: Option<Arc<str>>) {
        self.tenant = tenant;
    }

    /// The tenant the pooler shape's transaction sets locally, if any.
    pub(crate) fn local_tenant(&self) -> Option<&Arc<str>> {
        self.local_tenant.as_ref()
    }

    /// Sets the tenant the pooler shape's transaction sets locally.
    pub(crate) fn set_local_tenant(&mut self, tenant: Option<Arc<str>>) {
        self.local_tenant = tenant;
    }

    /// Whether the pooler shape's transaction is open on this connection.
    pub(crate) fn transaction_open(&self) -> bool {
        self.transaction_open
    }
}

impl Deref for PooledConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.connection.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        // Whatever runs now may be cut off at an await point: until it is
        // settled, the connection is not known to be ready for reuse.
        self.reusable = false;
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        if self.is_ready() && !self.transaction_open {
            self.pool
                .give_back(connection, self.born, self.tenant.take());
        } else {
            // Dropping closes the socket; the server ends any open transaction.
            self.pool.open.fetch_sub(1, Ordering::Relaxed);
            drop(connection);
        }
    }
}

impl AcquireError {
    /// The typed error for a caller, with `map` for a failed connect.
    pub(crate) fn into_error(
        self,
        waited: Duration,
        map: impl FnOnce(sqlx::Error) -> Error,
    ) -> Error {
        match self {
            AcquireError::Timeout => Error::PoolTimeout {
                backend: Backend::Postgres,
                waited,
            },
            AcquireError::Closed => Error::Unavailable {
                backend: Backend::Postgres,
                reason: "the pool is closed".to_owned(),
            },
            AcquireError::Connect(err) => map(err),
        }
    }
}
