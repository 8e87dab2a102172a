//! The names a test's stores get: one id per test,
//! `reposmith_test_<unix seconds>_<12 hex digits>`, used as the PostgreSQL
//! database, the MongoDB database and the Redis key prefix alike, so a
//! failed test's leftovers are found together and their age is read from
//! the name (neither PostgreSQL nor Redis records when a database or key
//! was made).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The start of every test store's name.
pub const PREFIX: &str = "reposmith_test_";

/// The start of every template database's name.
pub const TEMPLATE_PREFIX: &str = "reposmith_tpl_";

/// The names of one test's stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestNames {
    /// The test's path (`module::function`).
    pub test: String,
    /// The id every store of the test is named after.
    pub id: String,
    /// The PostgreSQL database, when the test has one.
    pub postgres: Option<String>,
    /// The MongoDB database, when the test has one.
    pub mongo: Option<String>,
    /// The Redis key prefix, when the test uses Redis.
    pub redis: Option<String>,
}

/// A fresh id: the time (for cleanup by age) and 48 random bits (the tail
/// of a UUIDv7) so parallel tests and processes never collide.
pub fn fresh_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("{PREFIX}{secs}_{}", &random[20..])
}

/// When the store named `name` was made, if `name` is one of ours.
pub fn created_at(name: &str) -> Option<SystemTime> {
    let rest = name.strip_prefix(PREFIX)?;
    let (secs, random) = rest.split_once('_')?;
    let plain = random.len() == 12 && random.bytes().all(|b| b.is_ascii_hexdigit());
    let secs: u64 = secs.parse().ok().filter(|_| plain)?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The id `key` (a Redis key) belongs to: the prefix up to its first `:`,
/// after an opening hash-tag brace.
pub fn id_of_key(key: &str) -> Option<&str> {
    let key = key.strip_prefix('{').unwrap_or(key);
    let (id, _) = key.split_once(':')?;
    created_at(id).map(|_| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_their_time() {
        let (a, b) = (fresh_id(), fresh_id());
        assert_ne!(a, b);
        assert!(a.len() < 63, "{a}");
        let made = created_at(&a).unwrap();
        assert!(SystemTime::now().duration_since(made).unwrap() < Duration::from_secs(5));
        assert_eq!(created_at("reposmith_test_12_zz"), None);
        assert_eq!(created_at("other_12_0123456789ab"), None);
        assert_eq!(id_of_key(&format!("{{{a}:q:jobs}}:wait")), Some(a.as_str()));
        assert_eq!(id_of_key(&format!("{a}:c:pg:doc:r:1")), Some(a.as_str()));
        assert_eq!(id_of_key("reposmith:c:pg:doc:r:1"), None);
    }
}
