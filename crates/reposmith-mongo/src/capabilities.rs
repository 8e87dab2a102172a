//! What the connected MongoDB server can do, read from its `hello` and `buildInfo` replies.

use mongodb::bson::Document;

/// Wire version of MongoDB 4.0, the first with replica-set transactions.
const WIRE_VERSION_RS_TRANSACTIONS: i32 = 7;
/// Wire version of MongoDB 4.2, the first with sharded transactions.
const WIRE_VERSION_SHARDED_TRANSACTIONS: i32 = 8;

/// Server features reposmith adapts to, probed once at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MongoCapabilities {
    /// `buildInfo.version`, e.g. `7.0.14`.
    pub server_version: String,
    /// `hello.maxWireVersion`.
    pub max_wire_version: i32,
    /// Replica set name, when the server is a member of one.
    pub replica_set: Option<String>,
    /// True behind a `mongos` router.
    pub sharded: bool,
    /// Multi-document transactions are possible on this deployment.
    pub transactions: bool,
    /// Largest BSON document the server accepts (`hello.maxBsonObjectSize`).
    pub max_bson_object_size: i64,
    /// `$vectorSearch` and search indexes are available (Atlas, or MongoDB
    /// with `mongot`): probed with a `$listSearchIndexes` aggregation, which
    /// servers without a search process refuse. Without it vector searches
    /// are computed exactly, server-side, in an aggregation pipeline.
    pub vector_search: bool,
}

impl MongoCapabilities {
    /// Reads capabilities from the replies to `hello` and `buildInfo`.
    pub(crate) fn from_replies(hello: &Document, build_info: &Document) -> Self {
        let max_wire_version = number(hello, "maxWireVersion").unwrap_or(0) as i32;
        let replica_set = hello.get_str("setName").ok().map(str::to_owned);
        let sharded = hello.get_str("msg").is_ok_and(|m| m == "isdbgrid");
        let transactions = match (&replica_set, sharded) {
            (Some(_), _) => max_wire_version >= WIRE_VERSION_RS_TRANSACTIONS,
            (None, true) => max_wire_version >= WIRE_VERSION_SHARDED_TRANSACTIONS,
            (None, false) => false,
        };
        MongoCapabilities {
            server_version: build_info
                .get_str("version")
                .unwrap_or("unknown")
                .to_owned(),
            max_wire_version,
            replica_set,
            sharded,
            transactions,
            max_bson_object_size: number(hello, "maxBsonObjectSize").unwrap_or(16 * 1024 * 1024),
            vector_search: false,
        }
    }

    /// These capabilities with the outcome of the search probe: `Ok` (the
    /// stage ran) or a `NamespaceNotFound` error (the stage was understood,
    /// the probe collection is absent) mean search is there; any other
    /// error (`CommandNotSupported` on SecantusDB, `SearchNotEnabled` on
    /// MongoDB without `mongot`, an unknown stage on old servers) means not.
    pub(crate) fn with_search_probe(mut self, outcome: Result<(), Option<i32>>) -> Self {
        self.vector_search = matches!(outcome, Ok(()) | Err(Some(NAMESPACE_NOT_FOUND)));
        self
    }
}

/// MongoDB's `NamespaceNotFound` code.
const NAMESPACE_NOT_FOUND: i32 = 26;

/// A numeric field whatever BSON number type the server chose for it.
fn number(doc: &Document, key: &str) -> Option<i64> {
    let value = doc.get(key)?;
    value
        .as_i32()
        .map(i64::from)
        .or_else(|| value.as_i64())
        .or_else(|| value.as_f64().map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn replica_set_member_supports_transactions() {
        let hello = doc! { "setName": "rs0", "maxWireVersion": 21, "maxBsonObjectSize": 16777216 };
        let caps = MongoCapabilities::from_replies(&hello, &doc! { "version": "7.0.14" });
        assert!(caps.transactions);
        assert_eq!(caps.server_version, "7.0.14");
        assert_eq!(caps.max_bson_object_size, 16_777_216);
    }

    #[test]
    fn standalone_has_no_transactions_and_old_mongos_neither() {
        let standalone = doc! { "maxWireVersion": 21 };
        assert!(!MongoCapabilities::from_replies(&standalone, &doc! {}).transactions);
        let old_mongos = doc! { "msg": "isdbgrid", "maxWireVersion": 7.0 };
        let caps = MongoCapabilities::from_replies(&old_mongos, &doc! {});
        assert!(caps.sharded && !caps.transactions);
    }

    #[test]
    fn search_is_there_only_when_the_probe_stage_is_understood() {
        let caps = || MongoCapabilities::from_replies(&doc! {}, &doc! {});
        assert!(!caps().vector_search);
        assert!(caps().with_search_probe(Ok(())).vector_search);
        assert!(caps().with_search_probe(Err(Some(26))).vector_search);
        for refused in [Some(115), Some(31082), Some(40324), None] {
            assert!(!caps().with_search_probe(Err(refused)).vector_search);
        }
    }
}
