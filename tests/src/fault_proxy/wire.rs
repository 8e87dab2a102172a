//! Cutting the client's byte stream into requests, and reading them.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::Wire;

/// The client's next request as `wire` frames it; `None` at EOF or error.
pub(super) async fn read_request(
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
        Wire::Mongo => read_framed(stream, 0, i32::from_le_bytes).await,
        Wire::Postgres if *started => read_framed(stream, 1, i32::from_be_bytes).await,
        Wire::Postgres => {
            let packet = read_framed(stream, 0, i32::from_be_bytes).await?;
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
pub(super) fn mongo_command(message: &[u8]) -> Option<&[u8]> {
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

/// Whether `needle` occurs in `haystack` (an empty one always does).
pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A byte count for the counters.
pub(super) fn len(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}
