//! One proxied connection: both directions forwarded under its mode.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::wire::{len, read_request};
use super::{Counters, Cut, Mode, Wire};

/// No reply is being lost / lose it, then close / lose it, then reset.
const KEEP: u8 = 0;
const LOSE_CLOSE: u8 = 1;
const LOSE_RESET: u8 = 2;

/// One client connection, forwarded until a side closes or the mode cuts it.
pub(super) async fn serve(
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
