//! [`CacheSpec`]: what `#[repo(cache(..))]` declares for an entity.

use std::time::Duration;

/// How an entity's reads are cached: emitted by the derive from
/// `#[repo(cache(ttl = "5m", negative_ttl = "30s"))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheSpec {
    /// How long a found row (or a cached query's result) stays cached, in
    /// milliseconds, before jitter.
    pub ttl_ms: u64,
    /// How long "no row with this id" stays cached, in milliseconds; 0:
    /// absent rows are not cached.
    pub negative_ttl_ms: u64,
    /// A hash of the struct's stored shape (fields, their types and
    /// attributes), computed by the derive. It is written in every entry's
    /// header, so a build whose struct changed never decodes an entry an
    /// older build wrote (it is a miss); both builds share the key, so an
    /// invalidation by either removes it.
    pub shape: u64,
}

impl CacheSpec {
    /// A spec caching rows for `ttl_ms` and absent rows for
    /// `negative_ttl_ms` (0: not at all), for the struct shape `shape`.
    pub const fn new(ttl_ms: u64, negative_ttl_ms: u64, shape: u64) -> Self {
        CacheSpec {
            ttl_ms,
            negative_ttl_ms,
            shape,
        }
    }

    /// How long a row stays cached.
    pub const fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// How long an absent row stays cached, if absent rows are cached.
    pub const fn negative_ttl(&self) -> Option<Duration> {
        match self.negative_ttl_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}
