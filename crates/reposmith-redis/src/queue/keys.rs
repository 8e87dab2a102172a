//! The Redis keys of one queue, all under the hash tag `{<prefix>:q:<name>}`
//! (the prefix is `reposmith` unless [`QueueOptions::prefix`] says
//! otherwise) so they live in one Cluster slot and a script may touch all
//! of them.
//!
//! [`QueueOptions::prefix`]: super::QueueOptions::prefix

use reposmith_core::Result;
use reposmith_core::job::validate_name;
use reposmith_core::limit::check_name;

/// The keys of one queue. The per-job keys (`job:<id>`, `id:<id>`,
/// `dedup:<sha1>`) are built inside the scripts from [`prefix`](Self::prefix);
/// the id part is always a UUID and the dedup part a SHA-1 hex digest, so no
/// user text ever becomes part of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueKeys {
    /// The queue's name, as validated.
    pub(crate) name: String,
    /// `{<prefix>:q:<name>}:`, the start of every key.
    pub(crate) prefix: String,
}

impl QueueKeys {
    /// The keys of queue `name` under key prefix `prefix`, refusing a name
    /// that is not 1 to 64 of `A-Z a-z 0-9 _ - .` and a prefix that is not
    /// a valid key-prefix name (`check_name`'s rule).
    pub(crate) fn new(prefix: &str, name: &str) -> Result<QueueKeys> {
        validate_name("queue", name)?;
        check_name(prefix, "queue prefix")?;
        Ok(QueueKeys {
            name: name.to_owned(),
            prefix: format!("{{{prefix}:q:{name}}}:"),
        })
    }

    /// The fixed keys, in the order every script reads them as `KEYS[1..7]`.
    pub(crate) fn script_keys(&self) -> [String; 7] {
        [
            "wait", "delayed", "active", "dead", "seq", "signal", "stats",
        ]
        .map(|k| self.key(k))
    }

    /// The list a blocked fetcher waits on.
    pub(crate) fn signal(&self) -> String {
        self.key("signal")
    }

    /// `<prefix><suffix>`.
    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = QueueKeys::new("reposmith", "embed.v1").unwrap();
        assert_eq!(keys.signal(), "{reposmith:q:embed.v1}:signal");
        for key in keys.script_keys() {
            assert!(key.starts_with("{reposmith:q:embed.v1}:"), "{key}");
        }
        assert_eq!(keys.key("wait"), "{reposmith:q:embed.v1}:wait");
        assert!(QueueKeys::new("reposmith", "a}b").is_err());
        assert!(QueueKeys::new("reposmith", "a*").is_err());
        assert!(QueueKeys::new("a*", "jobs").is_err());
        let other = QueueKeys::new("reposmith_test_1", "jobs").unwrap();
        assert_eq!(other.signal(), "{reposmith_test_1:q:jobs}:signal");
    }
}
