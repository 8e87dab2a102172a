//! [`Lua`]: a script's source and its SHA-1, for `EVALSHA` with an `EVAL`
//! fallback; shared by the queue's and the cache's scripts.

use redis::Script;

/// A script's source and SHA-1.
pub(crate) struct Lua {
    code: &'static str,
    hash: String,
}

impl Lua {
    /// The script `code`, hashed once.
    pub(crate) fn new(code: &'static str) -> Lua {
        Lua {
            code,
            hash: Script::new(code).get_hash().to_owned(),
        }
    }

    /// The source, for `EVAL`.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The SHA-1 of the source, for `EVALSHA`.
    pub(crate) fn hash(&self) -> &str {
        &self.hash
    }
}
