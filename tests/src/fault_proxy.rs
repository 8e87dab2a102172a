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
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
pub struct Matcher(Arc<dyn Fn(&[u8]) -> bool + Send + Sync>);

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

/// No reply is being lost / lose it, then close / lose it, then reset.
const KEEP: u8 = 0;
const LOSE_CLOSE: u8 = 1;
const LOSE_RESET: u8 = 2;

/// One client connection, forwarded until a side closes or the mode cuts it.
async fn serve(
    mut client: TcpStream,
    upstream: String,
    wire: Wire,
    mode: watch::Receiver<Mode>,
    counters: Arc<Counters>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let losing = AtomicU8::new(KEEP);
    let cut = {
        let (mut client_in, mut client_out) = client.split();
        let (mut server_in, mut server_out) = server.split();
        let requests = async {
            let (mut mode, mut started) = (mode.clone(), false);
            loop {
                let Some(request) = read_request(&mut client_in, wire, &mut started).await else {
                    return Cut::Close;
                };
                counters
                    .bytes_up
                    .fetch_add(len(&request), Ordering::Relaxed);
                match mode_now(&mut mode).await {
                    Err(cut) => return cut,
                    Ok(Mode::Delay(d)) => tokio::time::sleep(d).await,
                    Ok(Mode::LoseReply(loss)) if loss.matcher.matches(&request) => {
                        counters.matched.fetch_add(1, Ordering::Relaxed);
                        if loss.take() {
                            let how = if loss.cut == Cut::Reset {
                                LOSE_RESET
                            } else {
                                LOSE_CLOSE
                            };
                            losing.store(how, Ordering::Release);
                        }
                    }
                    Ok(_) => {}
                }
                if server_out.write_all(&request).await.is_err() {
                    return Cut::Close;
                }
            }
        };
        let replies = async {
            let (mut mode, mut buffer) = (mode.clone(), vec![0; 16 * 1024]);
            loop {
                let n = match server_in.read(&mut buffer).await {
                    Ok(0) | Err(_) => return Cut::Close,
                    Ok(n) => n,
                };
                match losing.load(Ordering::Acquire) {
                    KEEP => {}
                    how => {
                        counters.lost.fetch_add(1, Ordering::Relaxed);
                        return if how == LOSE_RESET {
                            Cut::Reset
                        } else {
                            Cut::Close
                        };
                    }
                }
                counters
                    .bytes_down
                    .fetch_add(len(&buffer[..n]), Ordering::Relaxed);
                match mode_now(&mut mode).await {
                    Err(cut) => return cut,
                    Ok(Mode::Delay(d)) => tokio::time::sleep(d).await,
                    Ok(_) => {}
                }
                if client_out.write_all(&buffer[..n]).await.is_err() {
                    return Cut::Close;
                }
            }
        };
        let ended = async {
            let mut mode = mode.clone();
            loop {
                match *mode.borrow_and_update() {
                    Mode::Close => return Cut::Close,
                    Mode::Reset => return Cut::Reset,
                    _ => {}
                }
                if mode.changed().await.is_err() {
                    return Cut::Close;
                }
            }
        };
        tokio::select! {
            cut = requests => cut,
            cut = replies => cut,
            cut = ended => cut,
        }
    };
    match cut {
        Cut::Close => {
            let _ = client.shutdown().await;
            let _ = server.shutdown().await;
        }
        Cut::Reset => {
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
    }
}

/// The mode to forward under, waiting while it is [`Mode::Stall`]; the cut
/// if it is [`Mode::Close`] or [`Mode::Reset`] or the proxy is gone.
async fn mode_now(mode: &mut watch::Receiver<Mode>) -> Result<Mode, Cut> {
    loop {
        let now = mode.borrow_and_update().clone();
        match now {
            Mode::Close => return Err(Cut::Close),
            Mode::Reset => return Err(Cut::Reset),
            Mode::Stall => {
                if mode.changed().await.is_err() {
                    return Err(Cut::Close);
                }
            }
            other => return Ok(other),
        }
    }
}

/// The client's next request as `wire` frames it; `None` at EOF or error.
async fn read_request(
    stream: &mut (impl AsyncRead + Unpin),
    wire: Wire,
    started: &mut bool,
) -> Option<Vec<u8>> {
    match wire {
        Wire::Bytes => {
            let mut buffer = vec![0; 16 * 1024];
            let n = stream.read(&mut buffer).await.ok().filter(|&n| n > 0)?;
            buffer.truncate(n);
            Some(buffer)
        }
        Wire::Mongo => read_framed(stream, 0, |l| i32::from_le_bytes(l)).await,
        Wire::Postgres if *started => read_framed(stream, 1, |l| i32::from_be_bytes(l)).await,
        Wire::Postgres => {
            let packet = read_framed(stream, 0, |l| i32::from_be_bytes(l)).await?;
            // SSLRequest and GSSENCRequest come before the StartupMessage.
            let code = packet
                .get(4..8)
                .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
            *started = !matches!(code, Some(80_877_103 | 80_877_104));
            Some(packet)
        }
    }
}

/// A message of `tag` bytes, then a 4-byte length counting itself and the
/// rest (PostgreSQL: 1-byte type; MongoDB: none, the length is the total).
async fn read_framed(
    stream: &mut (impl AsyncRead + Unpin),
    tag: usize,
    length: impl Fn([u8; 4]) -> i32,
) -> Option<Vec<u8>> {
    let mut message = vec![0; tag + 4];
    stream.read_exact(&mut message).await.ok()?;
    let counted = usize::try_from(length(message[tag..].try_into().unwrap())).ok()?;
    message.resize(tag + counted.max(4), 0);
    stream.read_exact(&mut message[tag + 4..]).await.ok()?;
    Some(message)
}

/// The command name of a MongoDB OP_MSG: the first key of its body section.
fn mongo_command(message: &[u8]) -> Option<&[u8]> {
    const OP_MSG: i32 = 2013;
    let opcode = i32::from_le_bytes(message.get(12..16)?.try_into().ok()?);
    if opcode != OP_MSG {
        return None;
    }
    let mut at = 20; // header (16) and flag bits (4)
    loop {
        let kind = *message.get(at)?;
        let size = i32::from_le_bytes(message.get(at + 1..at + 5)?.try_into().ok()?);
        if kind == 0 {
            // The body: a BSON document; its first element's type, then its key.
            let key = message.get(at + 6..)?;
            return Some(&key[..key.iter().position(|&b| b == 0)?]);
        }
        at += 1 + usize::try_from(size).ok()?;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn len(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}
