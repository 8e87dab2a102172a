//! [`Health`]: what [`Store::ping`](crate::Store::ping) learned about each backend.

use std::fmt;

use reposmith_core::Result;

#[cfg(feature = "mongo")]
use crate::MongoHealth;
#[cfg(feature = "postgres")]
use crate::PgHealth;
#[cfg(feature = "redis")]
use crate::RedisHealth;

/// Stand-in for a backend whose feature is compiled out, so [`Health`] keeps one shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disabled {}

impl fmt::Display for Disabled {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

#[cfg(not(feature = "postgres"))]
type PgHealth = Disabled;
#[cfg(not(feature = "mongo"))]
type MongoHealth = Disabled;
#[cfg(not(feature = "redis"))]
type RedisHealth = Disabled;

/// Per-backend result of a health probe; `None` where the backend is not configured.
#[derive(Debug)]
#[non_exhaustive]
pub struct Health {
    /// PostgreSQL: server and pgvector versions, pool occupancy.
    pub postgres: Option<Result<PgHealth>>,
    /// MongoDB: server version, wire version, topology, transactions.
    pub mongo: Option<Result<MongoHealth>>,
    /// Redis: server version and mode.
    pub redis: Option<Result<RedisHealth>>,
}

impl Health {
    pub(crate) fn new(
        postgres: Option<Result<PgHealth>>,
        mongo: Option<Result<MongoHealth>>,
        redis: Option<Result<RedisHealth>>,
    ) -> Self {
        Health {
            postgres,
            mongo,
            redis,
        }
    }

    /// True when every configured backend answered.
    pub fn is_healthy(&self) -> bool {
        let ok = |r: Option<bool>| r.unwrap_or(true);
        ok(self.postgres.as_ref().map(Result::is_ok))
            && ok(self.mongo.as_ref().map(Result::is_ok))
            && ok(self.redis.as_ref().map(Result::is_ok))
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        line(f, "postgresql", self.postgres.as_ref())?;
        line(f, "mongodb", self.mongo.as_ref())?;
        line(f, "redis", self.redis.as_ref())
    }
}

fn line<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    entry: Option<&Result<T>>,
) -> fmt::Result {
    match entry {
        Some(Ok(health)) => writeln!(f, "{name:<11} ok      {health}"),
        Some(Err(error)) => writeln!(f, "{name:<11} FAILED  {error}"),
        None => writeln!(f, "{name:<11} not configured"),
    }
}
