//! A loopback TCP proxy in front of the MongoDB server that forwards every
//! wire-protocol message unchanged, except that once a given number of
//! `insert` commands went through, it loses the reply to every later one:
//! the command reaches the server (which stores what it can) and the
//! client's connection is closed before the reply arrives. Adapted from
//! `mongo_unit/proxy.rs`, which does the same to `commitTransaction`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// An OP_MSG body whose command is `insert`: a BSON string element named `insert`.
const INSERT: &[u8] = b"\x02insert\x00";

/// Counters shared by the proxy's connections.
#[derive(Default)]
struct Counts {
    /// `insert` commands whose reply still goes through.
    answered: AtomicU32,
    /// `insert` commands forwarded to the server.
    inserts: AtomicU32,
    /// Replies lost.
    lost: AtomicU32,
}

/// The running proxy; stops when dropped.
pub(crate) struct InsertReplyLoser {
    addr: SocketAddr,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl InsertReplyLoser {
    /// Proxies `upstream` (`host:port`): the first `answered` inserts get
    /// their replies, every later one loses it.
    pub(crate) async fn start(upstream: String, answered: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        counts.answered.store(answered, Ordering::Relaxed);
        let shared = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), Arc::clone(&shared)));
            }
        });
        InsertReplyLoser { addr, counts, task }
    }

    /// `host:port` to put in a client's URL.
    pub(crate) fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `insert` commands that reached the server.
    pub(crate) fn inserts(&self) -> u32 {
        self.counts.inserts.load(Ordering::Relaxed)
    }

    /// Insert replies lost so far.
    pub(crate) fn lost(&self) -> u32 {
        self.counts.lost.load(Ordering::Relaxed)
    }
}

impl Drop for InsertReplyLoser {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client connection: messages forwarded both ways until either side
/// closes, or an insert's reply is to be lost (both sockets are then dropped).
async fn relay(client: TcpStream, upstream: String, counts: Arc<Counts>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let lose_reply = AtomicBool::new(false);
    let requests = async {
        while let Some(message) = read_message(&mut client_in).await {
            if contains(&message, INSERT) {
                counts.inserts.fetch_add(1, Ordering::Relaxed);
                let take = |left: u32| left.checked_sub(1);
                if counts
                    .answered
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, take)
                    .is_err()
                {
                    lose_reply.store(true, Ordering::Release);
                }
            }
            if server_out.write_all(&message).await.is_err() {
                return;
            }
        }
    };
    let replies = async {
        while let Some(message) = read_message(&mut server_in).await {
            if lose_reply.load(Ordering::Acquire) {
                counts.lost.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if client_out.write_all(&message).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = replies => {}
    }
}

/// One wire-protocol message: a little-endian i32 total length, then the rest.
async fn read_message(stream: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut length = [0; 4];
    stream.read_exact(&mut length).await.ok()?;
    let total = usize::try_from(i32::from_le_bytes(length)).ok()?;
    let mut message = vec![0; total.max(4)];
    message[..4].copy_from_slice(&length);
    stream.read_exact(&mut message[4..]).await.ok()?;
    Some(message)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
