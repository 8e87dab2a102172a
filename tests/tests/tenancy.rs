//! Tenant isolation (`#[repo(tenant)]`, `for_tenant`) on both backends,
//! with canary rows of another tenant: every read path, search kind, write,
//! delete, stream, count, page, unit and nested unit of tenant `acme` never
//! returns, counts, changes or deletes `globex`'s rows; writes stamp the
//! tenant; an entity of another tenant is refused; a repository taken
//! without a tenant refuses to run. On PostgreSQL also the row-level
//! security the DDL enables (`pg`), and the same through PgBouncer in
//! transaction mode (`pg_pooler`).
//!
//! The bodies in `paths` are written once against `DataStore`,
//! `Repository` and `VectorSearch`; `pg` and `mongo` run them on their
//! backend (`tenancy_tests!`).

use chrono::{DateTime, Utc};
use reposmith::Vector;
use reposmith::prelude::*;
use uuid::Uuid;

mod cache;
mod mongo;
mod paths;
mod pg;
mod pg_pooler;
mod pg_rls;

/// A tenant-scoped passage with what the paths touch: an index, full
/// text, a vector, a version and soft delete (so `with_deleted`, restore
/// and purge are covered), cached so the cache paths are exercised.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "tenant_passages", cache(ttl = "5m", negative_ttl = "5m"))]
pub(crate) struct Passage {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(tenant)]
    pub(crate) org: String,
    #[repo(index)]
    pub(crate) topic: String,
    #[repo(full_text)]
    pub(crate) body: String,
    #[repo(vector(dims = 3, distance = "l2"))]
    pub(crate) embedding: Vector,
    #[repo(version)]
    pub(crate) version: i64,
    #[repo(soft_delete)]
    pub(crate) deleted_at: Option<DateTime<Utc>>,
}

/// Cache options for tests that expect hits: a Redis call on a loaded
/// 2-core machine can exceed the 50 ms default response timeout, which
/// would (correctly) open the breaker and turn a hit into a database read.
pub(crate) fn patient_cache(prefix: String) -> reposmith::cache::CacheOptions {
    let mut options = reposmith::cache::CacheOptions::default()
        .prefix(prefix)
        .response_timeout(std::time::Duration::from_secs(2));
    options.invalidation_timeout = std::time::Duration::from_secs(2);
    options
}

impl Passage {
    /// A passage with the tenant unset (the repository stamps it).
    pub(crate) fn new(topic: &str, at: f32) -> Passage {
        Passage {
            id: Uuid::nil(),
            org: String::new(),
            topic: topic.to_owned(),
            body: format!("penguins waddle on ice {topic}"),
            embedding: Vector::from(vec![at, 0.0, 0.0]),
            version: 0,
            deleted_at: None,
        }
    }
}
