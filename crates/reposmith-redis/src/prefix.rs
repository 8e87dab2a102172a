//! Deleting every key under a key prefix: what a test harness does after a
//! passing test (`#[reposmith::test]` gives each test its own prefix for
//! the cache, the limiter and the queue) and what its cleanup does with
//! leftovers.
//!
//! Keys are found with `SCAN` and an escaped `MATCH` pattern (the prefix's
//! glob characters are escaped, so a prefix never matches more than its own
//! keys) and removed with `UNLINK` in batches. reposmith's keys start with
//! the prefix itself (`<prefix>:c:..`, the cache's rows) or with a hash tag
//! opening with it (`{<prefix>:c:..}`, `{<prefix>:l:..}`, `{<prefix>:q:..}`),
//! so both shapes are scanned.

use redis::AsyncCommands as _;
use reposmith_core::{Error, Result};

use crate::RedisBackend;

/// Keys asked for per `SCAN` call and removed per `UNLINK`.
const BATCH: usize = 500;

/// `text` with Redis glob metacharacters (`* ? [ ] \`) escaped, so a `MATCH`
/// pattern built from it matches `text` literally.
pub fn escape_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `MATCH` patterns of every key reposmith writes under `prefix`:
/// `<prefix>:*` and `{<prefix>:*` (`{` is no glob character in Redis).
pub fn prefix_patterns(prefix: &str) -> [String; 2] {
    let escaped = escape_pattern(prefix);
    [format!("{escaped}:*"), format!("{{{escaped}:*")]
}

impl RedisBackend {
    /// Deletes every key under `prefix` (see the module docs for the shapes)
    /// and returns how many were removed. An empty prefix is refused: it
    /// would match every key of the server. On a Redis Cluster this is
    /// refused too (a `SCAN` walks one node); use a standalone server for
    /// tests.
    pub async fn delete_prefixed(&self, prefix: &str) -> Result<u64> {
        if prefix.is_empty() {
            return Err(Error::config(
                "redis prefix",
                "an empty prefix matches every key",
            ));
        }
        let mut conn = self.connection();
        if conn.is_cluster() {
            return Err(Error::config(
                "redis prefix",
                "deleting by prefix walks one server with SCAN; not supported on a cluster",
            ));
        }
        let mut removed = 0;
        for pattern in prefix_patterns(prefix) {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(BATCH)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.map_error(&e))?;
                if !keys.is_empty() {
                    let n: u64 = conn.unlink(&keys).await.map_err(|e| self.map_error(&e))?;
                    removed += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_pattern("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
        assert_eq!(escape_pattern("reposmith_test_1"), "reposmith_test_1");
        assert_eq!(
            prefix_patterns("t*"),
            ["t\\*:*".to_owned(), "{t\\*:*".to_owned()]
        );
    }
}
