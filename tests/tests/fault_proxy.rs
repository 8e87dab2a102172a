//! The fault proxy itself (`reposmith_tests::fault_proxy`), in front of a
//! local echo server: each mode, switched while connections are open.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reposmith_tests::fault_proxy::{Cut, FaultProxy, Matcher, Mode, ReplyLoss, Wire};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server on loopback that also records everything it received.
async fn echo_server() -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buffer = [0; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                    log.lock().unwrap().extend_from_slice(&buffer[..n]);
                    if stream.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, received)
}

async fn proxy() -> (FaultProxy, Arc<Mutex<Vec<u8>>>) {
    let (upstream, received) = echo_server().await;
    (FaultProxy::start(upstream, Wire::Bytes).await, received)
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    TcpStream::connect(proxy.addr()).await.unwrap()
}

/// Sends `message` and reads as many bytes back, within `within`.
async fn round_trip(stream: &mut TcpStream, message: &[u8], within: Duration) -> Option<Vec<u8>> {
    stream.write_all(message).await.unwrap();
    let mut reply = vec![0; message.len()];
    match tokio::time::timeout(within, stream.read_exact(&mut reply)).await {
        Ok(Ok(_)) => Some(reply),
        _ => None,
    }
}

/// What the peer does next: bytes, EOF (`Ok(0)`) or an error, within 2 s.
async fn next_read(stream: &mut TcpStream) -> std::io::Result<usize> {
    let mut buffer = [0; 64];
    tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer))
        .await
        .expect("the proxy answered within 2 s")
}

const SOON: Duration = Duration::from_secs(2);

#[tokio::test]
async fn pass_forwards_both_ways_and_counts() {
    let (proxy, _) = proxy().await;
    let mut client = connect(&proxy).await;
    assert_eq!(
        round_trip(&mut client, b"hello", SOON).await.unwrap(),
        b"hello"
    );
    let stats = proxy.stats();
    assert_eq!(
        (stats.connections, stats.bytes_up, stats.bytes_down),
        (1, 5, 5)
    );
}

#[tokio::test]
async fn delay_holds_each_chunk_both_ways() {
    let (proxy, _) = proxy().await;
    let mut client = connect(&proxy).await;
    proxy.set_mode(Mode::Delay(Duration::from_millis(200)));
    let started = Instant::now();
    assert!(round_trip(&mut client, b"slow", SOON).await.is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stall_holds_traffic_with_sockets_open_until_switched_back() {
    let (proxy, _) = proxy().await;
    let mut client = connect(&proxy).await;
    proxy.set_mode(Mode::Stall);
    let held = round_trip(&mut client, b"held", Duration::from_millis(300)).await;
    assert!(held.is_none(), "forwarded while stalled");
    proxy.set_mode(Mode::Pass);
    let mut reply = [0; 4];
    tokio::time::timeout(SOON, client.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&reply, b"held");
}

#[tokio::test]
async fn close_sends_fin_and_reset_sends_rst() {
    let (proxy, _) = proxy().await;
    let mut closed = connect(&proxy).await;
    assert!(round_trip(&mut closed, b"a", SOON).await.is_some());
    proxy.set_mode(Mode::Close);
    assert_eq!(next_read(&mut closed).await.unwrap(), 0, "EOF");
    proxy.set_mode(Mode::Pass);
    let mut reset = connect(&proxy).await;
    assert!(round_trip(&mut reset, b"b", SOON).await.is_some());
    proxy.set_mode(Mode::Reset);
    let error = next_read(&mut reset).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
}

#[tokio::test]
async fn a_matching_request_reaches_the_server_and_its_reply_is_lost() {
    let (proxy, received) = proxy().await;
    let commits = ReplyLoss::new(Matcher::contains(b"COMMIT")).times(1);
    proxy.set_mode(Mode::LoseReply(commits));
    let mut client = connect(&proxy).await;
    assert!(round_trip(&mut client, b"INSERT", SOON).await.is_some());
    client.write_all(b"COMMIT").await.unwrap();
    assert_eq!(
        next_read(&mut client).await.unwrap(),
        0,
        "cut, not answered"
    );
    assert!(
        received.lock().unwrap().ends_with(b"COMMIT"),
        "the server got it"
    );
    // The budget is spent: the next COMMIT gets its reply.
    let mut client = connect(&proxy).await;
    assert!(round_trip(&mut client, b"COMMIT", SOON).await.is_some());
    let stats = proxy.stats();
    assert_eq!((stats.matched, stats.lost), (2, 1), "{stats:?}");
}

#[tokio::test]
async fn a_lost_reply_can_end_in_a_reset_and_spare_the_first_matches() {
    let (proxy, _) = proxy().await;
    let loss = ReplyLoss::new(Matcher::contains(b"X"))
        .after(1)
        .then(Cut::Reset);
    proxy.set_mode(Mode::LoseReply(loss));
    let mut client = connect(&proxy).await;
    assert!(
        round_trip(&mut client, b"X1", SOON).await.is_some(),
        "spared"
    );
    client.write_all(b"X2").await.unwrap();
    let error = next_read(&mut client).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
}

#[tokio::test]
async fn modes_apply_to_new_connections_or_to_one_connection() {
    let (proxy, _) = proxy().await;
    let mut first = connect(&proxy).await;
    let mut second = connect(&proxy).await;
    assert!(round_trip(&mut first, b"1", SOON).await.is_some());
    assert!(round_trip(&mut second, b"2", SOON).await.is_some());
    proxy.set_connection_mode(0, Mode::Stall);
    let short = Duration::from_millis(300);
    assert!(
        round_trip(&mut first, b"1", short).await.is_none(),
        "first stalls"
    );
    assert!(
        round_trip(&mut second, b"2", SOON).await.is_some(),
        "second passes"
    );
    proxy.set_new_mode(Mode::Close);
    let mut third = connect(&proxy).await;
    assert_eq!(
        next_read(&mut third).await.unwrap(),
        0,
        "new ones are closed"
    );
    assert!(
        round_trip(&mut second, b"2", SOON).await.is_some(),
        "old ones pass"
    );
    assert_eq!(proxy.stats().connections, 3);
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let (proxy, _) = proxy().await;
    let mut client = connect(&proxy).await;
    assert!(round_trip(&mut client, b"a", SOON).await.is_some());
    drop(proxy);
    assert_eq!(next_read(&mut client).await.unwrap(), 0);
}

/// A PostgreSQL Query message (`Q`, length, text, NUL).
fn query(text: &str) -> Vec<u8> {
    let length = i32::try_from(text.len() + 5).unwrap();
    let mut message = vec![b'Q'];
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(text.as_bytes());
    message.push(0);
    message
}

#[test]
fn the_postgres_matcher_takes_the_whole_statement() {
    let commit = Matcher::postgres_query("COMMIT");
    assert!(commit.matches(&query("COMMIT")));
    assert!(commit.matches(&query("commit;")));
    assert!(!commit.matches(&query("BEGIN ISOLATION LEVEL READ COMMITTED")));
    assert!(!commit.matches(b"P\0\0\0\x0bCOMMIT\0"));
    let containing = Matcher::postgres_query_containing("COMMIT");
    assert!(containing.matches(&query("BEGIN ISOLATION LEVEL READ COMMITTED")));
}

#[test]
fn the_mongo_matcher_takes_the_command_name() {
    // OP_MSG: header (length, request id, response to, opcode 2013), flags,
    // a kind-0 section holding {insert: "c"}.
    let body = b"\x15\0\0\0\x02insert\0\x02\0\0\0c\0\0";
    let mut message = Vec::new();
    message.extend_from_slice(&i32::try_from(21 + body.len()).unwrap().to_le_bytes());
    message.extend_from_slice(&[0; 8]);
    message.extend_from_slice(&2013_i32.to_le_bytes());
    message.extend_from_slice(&[0; 4]);
    message.push(0);
    message.extend_from_slice(body);
    assert!(Matcher::mongo_command("insert").matches(&message));
    assert!(!Matcher::mongo_command("ins").matches(&message));
    assert!(!Matcher::mongo_command("commitTransaction").matches(&message));
}
