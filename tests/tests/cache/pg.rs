//! Filled in by the cache work.
