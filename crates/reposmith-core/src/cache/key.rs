//! [`Keys`]: the names of an entity's cache entries.
//!
//! `{prefix}:c:{backend}:{entity}:r:{id}` for a row and
//! `{{prefix}:c:{backend}:{entity}}:q:{generation}:{hash}` for a query.
//! A `#[repo(tenant)]` entity's entries are partitioned by tenant: its
//! base is `{prefix}:c:{backend}:{entity}:t:{tenant}` ([`Keys::in_tenant`]),
//! so a row entry, a query's hash tag and generation belong to one tenant
//! (see [`Cache::scoped_to`](super::Cache::scoped_to) for why).
//! The struct's shape ([`CacheSpec::shape`](super::CacheSpec::shape)) is not
//! in the key but in every entry's header ([`codec`](super::codec)): a build
//! with another struct treats the entry as a miss without decoding it, and
//! — unlike a shape in the key — an invalidation by either build of a
//! rolling deploy removes the one entry both read. The id is
//! and the tenant are the only user values in a key and are escaped: every byte outside
//! `A-Z a-z 0-9 . _ -` becomes `%XX`, so an id can hold no `{`, `}`, `:`,
//! `*` or whitespace (no hash tag, no pattern, no ambiguity).

use std::fmt::Write as _;

use super::store::Scope;
use crate::entity::Entity;
use crate::value::{FieldType, Value};
use crate::{Error, Result};

/// The longest key prefix accepted.
pub const MAX_PREFIX: usize = 64;

/// Key names for one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// `{prefix}:c:{backend}:{entity}`.
    base: String,
}

impl Keys {
    /// The keys of `E` under `prefix` for `backend`; `None` when `E`
    /// declares no cache.
    pub fn of<E: Entity>(prefix: &str, backend: &str) -> Option<Keys> {
        E::SCHEMA.cache?;
        Some(Keys::new(prefix, backend, E::SCHEMA.entity))
    }

    /// The keys of an entity named `entity` stored in `backend`.
    pub fn new(prefix: &str, backend: &str, entity: &str) -> Keys {
        Keys {
            base: format!("{prefix}:c:{}:{}", escape(backend), escape(entity)),
        }
    }

    /// These keys restricted to `tenant` (of the entity's tenant column
    /// type): `{base}:t:{tenant}`, the tenant escaped like an id. A
    /// tenant-scoped entity's rows and queries are only ever keyed this way.
    pub fn in_tenant(self, tenant: &Value) -> Keys {
        Keys {
            base: format!("{}:t:{}", self.base, escape(&id_text(tenant))),
        }
    }

    /// The row entry of the id `id`.
    pub fn row(&self, id: &Value) -> String {
        format!("{}:r:{}", self.base, escape(&id_text(id)))
    }

    /// The row entry of a typed id.
    pub fn row_of<T: FieldType>(&self, id: &T) -> String {
        self.row(&id.to_value())
    }

    /// The query scope (hash tag) of the entity.
    pub fn scope(&self) -> Scope {
        Scope(format!("{{{}}}", self.base))
    }
}

/// Checks a key prefix: 1 to [`MAX_PREFIX`] of `A-Z a-z 0-9 . _ -`.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let valid = !prefix.is_empty() && prefix.len() <= MAX_PREFIX && prefix.bytes().all(plain);
    match valid {
        true => Ok(()),
        false => Err(Error::config(
            "cache",
            format!("key prefix {prefix:?} must be 1 to {MAX_PREFIX} of A-Z a-z 0-9 . _ -"),
        )),
    }
}

/// The canonical text of an id: what Postgres prints for `id::text` of the
/// integer, uuid and text ids (so a key built in SQL would match), hex for
/// an ObjectId.
pub fn id_text(id: &Value) -> String {
    match id {
        Value::I16(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::Uuid(u) => u.hyphenated().to_string(),
        Value::Text(s) => s.clone(),
        Value::ObjectId(o) => o.to_string(),
        other => format!("{other:?}"),
    }
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// `text` with every byte outside `A-Z a-z 0-9 . _ -` as `%XX`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new("app", "pg", "Doc")
    }

    #[test]
    fn ids_are_escaped_so_no_user_text_forms_a_tag_or_pattern() {
        let key = keys().row(&Value::Text("a{b}:*c d%".into()));
        assert_eq!(key, "app:c:pg:Doc:r:a%7Bb%7D%3A%2Ac%20d%25");
        assert!(!key["app:c:pg:Doc:r:".len()..].contains(['{', '}', ':', '*']));
    }

    #[test]
    fn distinct_ids_give_distinct_keys() {
        let k = keys();
        assert_ne!(
            k.row(&Value::Text("a:b".into())),
            k.row(&Value::Text("a%3Ab".into()))
        );
        assert_ne!(k.row(&Value::I64(1)), k.row(&Value::I64(11)));
    }

    #[test]
    fn each_backend_has_its_own_keys() {
        let other = Keys::new("app", "mongo", "Doc");
        assert_ne!(keys().row(&Value::I64(1)), other.row(&Value::I64(1)));
        assert_ne!(keys().scope(), other.scope());
    }

    #[test]
    fn scope_is_one_hash_tag() {
        let scope = keys().scope();
        assert_eq!(scope.0, "{app:c:pg:Doc}");
        assert!(scope.query_key("g", "h").starts_with("{app:c:pg:Doc}:q:"));
    }

    #[test]
    fn tenants_partition_rows_and_queries_and_are_escaped() {
        let acme = keys().in_tenant(&Value::Text("acme".into()));
        let globex = keys().in_tenant(&Value::Text("globex".into()));
        let id = Value::I64(7);
        assert_eq!(acme.row(&id), "app:c:pg:Doc:t:acme:r:7");
        assert_ne!(acme.row(&id), globex.row(&id));
        assert_ne!(acme.row(&id), keys().row(&id));
        assert_eq!(acme.scope().0, "{app:c:pg:Doc:t:acme}");
        assert_ne!(acme.scope(), globex.scope());
        let hostile = keys().in_tenant(&Value::Text("a}:*{r".into()));
        assert_eq!(hostile.scope().0, "{app:c:pg:Doc:t:a%7D%3A%2A%7Br}");
        // A tenant can never end where an id begins: `:` is escaped.
        let tricky = keys().in_tenant(&Value::Text("x:r:1".into()));
        assert_ne!(
            tricky.row(&id),
            keys().in_tenant(&Value::Text("x".into())).row(&id)
        );
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("reposmith").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix("a{b}").is_err());
    }
}
