//! A loopback TCP proxy that injects network faults between a client and a
//! server: the tests' stand-in for toxiproxy.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:0` in front of an upstream
//! `host:port`; point the client's URL at [`FaultProxy::host_port`]. Every
//! connection follows a [`Mode`] that the test switches while traffic runs:
//! for every connection ([`FaultProxy::set_mode`]), only for connections
//! accepted from then on ([`FaultProxy::set_new_mode`]), or for one
//! connection by accept order ([`FaultProxy::set_connection_mode`]).
//!
//! - [`Mode::Pass`]: forward both ways.
//! - [`Mode::Delay`]: hold each chunk for the given time before forwarding.
//! - [`Mode::Stall`]: half-open: stop forwarding both ways, keep both
//!   sockets open; forwarding resumes when the mode changes back.
//! - [`Mode::Close`]: FIN to both sides. [`Mode::Reset`]: RST to both sides.
//! - [`Mode::LoseReply`]: a request that matches a [`Matcher`] (the client's
//!   requests are cut into messages by the [`Wire`] protocol) reaches the
//!   server, its reply is swallowed and the connection is then cut: the
//!   client cannot know whether the server acted (a lost COMMIT reply).
//!
//! Dropping the proxy stops accepting and closes every connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use connection::serve;
use wire::{contains, mongo_command};

mod connection;
mod wire;

/// How the client's byte stream is cut into requests for a [`Matcher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Whatever one read returns (at most 16 KiB) is one request.
    Bytes,
    /// PostgreSQL frontend messages: the untyped startup packets
    /// (SSLRequest, GSSENCRequest, StartupMessage), then a type byte and a
    /// big-endian length. Plaintext only: use `sslmode=disable`.
    Postgres,
    /// MongoDB wire-protocol messages: a little-endian total length first.
    Mongo,
}

/// What the proxy does to a connection's traffic.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Forward both ways unchanged.
    Pass,
    /// Hold each chunk, either way, this long before forwarding it.
    Delay(Duration),
    /// Stop forwarding both ways and keep both sockets open (a half-open
    /// connection, a peer that went silent). Data read meanwhile is held
    /// and forwarded once the mode changes to one that forwards.
    Stall,
    /// Close both sockets gracefully (FIN).
    Close,
    /// Reset both sockets (RST: `SO_LINGER` 0, then close).
    Reset,
    /// Forward requests; after a matching one, lose its reply and cut the
    /// connection (see [`ReplyLoss`]).
    LoseReply(ReplyLoss),
}

/// How a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// FIN to both sides.
    Close,
    /// RST to both sides.
    Reset,
}

/// A predicate over one client request (see [`Wire`]).
#[derive(Clone)]
pub struct Matcher(Arc<Predicate>);

/// What a [`Matcher`] holds.
type Predicate = dyn Fn(&[u8]) -> bool + Send + Sync;

impl Matcher {
    /// Any predicate over the request's bytes.
    pub fn new(test: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> Self {
        Matcher(Arc::new(test))
    }

    /// A request containing `needle`.
    pub fn contains(needle: &[u8]) -> Self {
        let needle = needle.to_vec();
        Matcher::new(move |request| contains(request, &needle))
    }

    /// A PostgreSQL simple-protocol Query (`Q`) whose whole text is
    /// `text`, ignoring case, surrounding blanks and a final `;` (sqlx sends
    /// `BEGIN`, `COMMIT` and `ROLLBACK` this way). Whole text, because
    /// `BEGIN ISOLATION LEVEL READ COMMITTED` contains `COMMIT`.
    pub fn postgres_query(text: &str) -> Self {
        let text = text.trim().trim_end_matches(';').to_ascii_uppercase();
        Matcher::new(move |request| {
            let Some((b'Q', rest)) = request.split_first() else {
                return false;
            };
            let query = String::from_utf8_lossy(rest.get(4..).unwrap_or_default());
            let query = query.trim_end_matches('\0').trim().trim_end_matches(';');
            query.trim().eq_ignore_ascii_case(&text)
        })
    }

    /// A PostgreSQL simple-protocol Query (`Q`) whose text contains `text`.
    pub fn postgres_query_containing(text: &str) -> Self {
        let text = text.as_bytes().to_vec();
        Matcher::new(move |request| request.first() == Some(&b'Q') && contains(request, &text))
    }

    /// A MongoDB OP_MSG whose command (the body's first key) is `name`,
    /// e.g. `commitTransaction` or `insert`.
    pub fn mongo_command(name: &str) -> Self {
        let name = name.as_bytes().to_vec();
        Matcher::new(move |request| mongo_command(request) == Some(&name[..]))
    }

    /// Whether `request` (one message as [`Wire`] frames it) matches.
    pub fn matches(&self, request: &[u8]) -> bool {
        (self.0)(request)
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Matcher")
    }
}

/// Which replies [`Mode::LoseReply`] loses. Its budgets are shared by every
/// connection (and every clone): matching requests are counted across the
/// proxy.
#[derive(Clone, Debug)]
pub struct ReplyLoss {
    matcher: Matcher,
    spared: Arc<AtomicU32>,
    budget: Arc<AtomicU32>,
    cut: Cut,
}

impl ReplyLoss {
    /// Lose the reply to every request `matcher` accepts, then close (FIN).
    pub fn new(matcher: Matcher) -> Self {
        ReplyLoss {
            matcher,
            spared: Arc::new(AtomicU32::new(0)),
            budget: Arc::new(AtomicU32::new(u32::MAX)),
            cut: Cut::Close,
        }
    }

    /// Let the first `n` matching requests get their replies.
    #[must_use]
    pub fn after(self, n: u32) -> Self {
        self.spared.store(n, Ordering::Relaxed);
        self
    }

    /// Lose at most `n` replies; later matching requests get theirs.
    #[must_use]
    pub fn times(self, n: u32) -> Self {
        self.budget.store(n, Ordering::Relaxed);
        self
    }

    /// End the connection this way once the reply is swallowed.
    #[must_use]
    pub fn then(mut self, cut: Cut) -> Self {
        self.cut = cut;
        self
    }

    /// Whether this matching request's reply is to be lost.
    fn take(&self) -> bool {
        let take = |left: u32| left.checked_sub(1);
        self.spared
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, take)
            .is_err()
            && self
                .budget
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, take)
                .is_ok()
    }
}

/// What the proxy saw, for the test to read ([`FaultProxy::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client connections accepted.
    pub connections: u64,
    /// Requests a [`Matcher`] accepted (under [`Mode::LoseReply`]).
    pub matched: u64,
    /// Replies lost.
    pub lost: u64,
    /// Bytes read from clients.
    pub bytes_up: u64,
    /// Bytes read from the server.
    pub bytes_down: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    matched: AtomicU64,
    lost: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// The mode for new connections and the live connections' modes.
struct Modes {
    for_new: Mode,
    connections: Vec<watch::Sender<Mode>>,
}

/// The running proxy; stops (and closes its connections) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    modes: Arc<Mutex<Modes>>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies `upstream` (`host:port`) in [`Mode::Pass`], cutting the
    /// client's requests by `wire`.
    pub async fn start(upstream: impl Into<String>, wire: Wire) -> Self {
        let upstream: String = upstream.into();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let modes = Arc::new(Mutex::new(Modes {
            for_new: Mode::Pass,
            connections: Vec::new(),
        }));
        let counters = Arc::new(Counters::default());
        let (weak, shared) = (Arc::downgrade(&modes), Arc::clone(&counters));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Some(modes) = weak.upgrade() else { return };
                let mode = {
                    let mut modes = modes.lock().unwrap();
                    let (sender, receiver) = watch::channel(modes.for_new.clone());
                    modes.connections.push(sender);
                    receiver
                };
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let (upstream, counters) = (upstream.clone(), Arc::clone(&shared));
                tokio::spawn(serve(client, upstream, wire, mode, counters));
            }
        });
        FaultProxy {
            addr,
            modes,
            counters,
            task,
        }
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` to put in a client's URL.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Switch every live connection, and every later one, to `mode`.
    pub fn set_mode(&self, mode: Mode) {
        let mut modes = self.modes.lock().unwrap();
        for connection in &modes.connections {
            connection.send_replace(mode.clone());
        }
        modes.for_new = mode;
    }

    /// Switch only connections accepted from now on to `mode`.
    pub fn set_new_mode(&self, mode: Mode) {
        self.modes.lock().unwrap().for_new = mode;
    }

    /// Switch the `index`th connection accepted (from 0) to `mode`.
    ///
    /// # Panics
    /// If fewer than `index + 1` connections were accepted.
    pub fn set_connection_mode(&self, index: usize, mode: Mode) {
        self.modes.lock().unwrap().connections[index].send_replace(mode);
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            connections: c.connections.load(Ordering::Relaxed),
            matched: c.matched.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Dropping the senders ends every connection (see `mode_now`).
        self.modes.lock().unwrap().connections.clear();
    }
}
