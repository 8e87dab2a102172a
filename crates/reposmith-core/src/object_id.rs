//! [`ObjectId`]: MongoDB's 12-byte id, usable as an entity id on every backend.
//!
//! MongoDB stores it as a BSON ObjectId; PostgreSQL as its 24-character hex
//! text, which sorts like the bytes (so by creation second, then process and
//! counter). The core has no BSON dependency, so the type is defined here;
//! the MongoDB backend converts it to and from `bson::oid::ObjectId`.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A 12-byte id: 4 bytes of Unix seconds, 5 random bytes per process, a
/// 3-byte counter, as MongoDB generates them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectId([u8; 12]);

impl ObjectId {
    /// The all-zero id: the repository replaces it with a fresh one on insert.
    pub const ZERO: ObjectId = ObjectId([0; 12]);

    /// A fresh id, unique within this process and, with overwhelming
    /// probability, across processes.
    pub fn new() -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let count = counter().fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&seconds.to_be_bytes());
        bytes[4..9].copy_from_slice(process_bytes());
        bytes[9..].copy_from_slice(&count.to_be_bytes()[1..]);
        ObjectId(bytes)
    }

    /// The id with these bytes.
    pub const fn from_bytes(bytes: [u8; 12]) -> Self {
        ObjectId(bytes)
    }

    /// The id's bytes.
    pub const fn bytes(&self) -> [u8; 12] {
        self.0
    }

    /// True for [`ObjectId::ZERO`].
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 12]
    }

    /// The 24 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Random per process, fixed for its lifetime (MongoDB's "random value").
fn process_bytes() -> &'static [u8; 5] {
    static BYTES: OnceLock<[u8; 5]> = OnceLock::new();
    BYTES.get_or_init(|| {
        // The last bytes of a v7 uuid are random.
        let random = uuid::Uuid::now_v7();
        let mut bytes = [0u8; 5];
        bytes.copy_from_slice(&random.as_bytes()[11..]);
        bytes
    })
}

/// Starts at a random value, as MongoDB's counter does.
fn counter() -> &'static AtomicU32 {
    static COUNTER: OnceLock<AtomicU32> = OnceLock::new();
    COUNTER.get_or_init(|| {
        let random = uuid::Uuid::now_v7();
        let b = random.as_bytes();
        AtomicU32::new(u32::from_be_bytes([0, b[8], b[9], b[10]]))
    })
}

/// Why text is not an ObjectId.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an ObjectId is 24 hex characters, got {0:?}")]
pub struct ParseObjectIdError(String);

impl FromStr for ObjectId {
    type Err = ParseObjectIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || ParseObjectIdError(text.chars().take(40).collect());
        if text.len() != 24 || !text.is_ascii() {
            return Err(fail());
        }
        let mut bytes = [0u8; 12];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| fail())?;
        }
        Ok(ObjectId(bytes))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_unique_ordered_by_time_and_round_trip_as_hex() {
        let a = ObjectId::new();
        let b = ObjectId::new();
        assert_ne!(a, b);
        assert!(!a.is_zero() && ObjectId::ZERO.is_zero());
        assert_eq!(
            a.bytes()[4..9],
            b.bytes()[4..9],
            "one process, one random part"
        );
        assert_eq!(a.to_hex().len(), 24);
        assert_eq!(a.to_hex().parse::<ObjectId>().unwrap(), a);
        assert!("zz".parse::<ObjectId>().is_err());
        assert!("0123456789abcdef0123456g".parse::<ObjectId>().is_err());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<ObjectId>(&json).unwrap(), a);
    }
}
