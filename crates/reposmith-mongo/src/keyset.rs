//! Ordering and keyset pagination in BSON: renders the order and the
//! "after this row" predicate that `reposmith_core::keyset` decides, with
//! the same total order as Postgres: the caller's sort keys, then the id
//! ascending; ascending keys put NULLs last and descending keys put them first.
//!
//! MongoDB sorts null *before* every value, so a nullable key gets a
//! computed companion `__rs_null_<i>` (`true` for null or missing, from
//! `{$lte: ["$k", null]}`, null being the smallest BSON value) sorted in the
//! key's own direction just before it. Such a query then runs as an
//! aggregation: `$match`, `$addFields`, `$sort`, `$limit`; one without a
//! nullable key is a plain `find` with `sort` and `limit` (cheaper on the
//! server, and what an index on the sort keys serves directly).
//!
//! "After this row" renders the core's disjuncts,
//! `k1 ≻ v1 OR (k1 = v1 AND k2 ≻ v2) OR ...`; MongoDB has no row-value
//! comparison, so it never takes the core's row-comparison form.

use mongodb::bson::{Bson, Document, doc};
use reposmith_core::keyset::{After, Condition, KeyTest, SortKey};
use reposmith_core::{EntitySchema, Result};

use crate::codec::{key, to_bson};
use crate::render::{nothing, op};

fn null_flag(i: usize) -> String {
    format!("__rs_null_{i}")
}

/// The `$addFields` stage computing the null flags, when a key is nullable.
pub(crate) fn null_flags(schema: &EntitySchema, keys: &[SortKey]) -> Option<Document> {
    let mut fields = Document::new();
    for (i, k) in keys.iter().enumerate().filter(|(_, k)| k.column.nullable) {
        fields.insert(
            null_flag(i),
            doc! { "$lte": [format!("${}", key(schema, k.index)), Bson::Null] },
        );
    }
    (!fields.is_empty()).then(|| doc! { "$addFields": fields })
}

/// The `$sort` specification for `keys`.
pub(crate) fn sort_spec(schema: &EntitySchema, keys: &[SortKey]) -> Document {
    let mut spec = Document::new();
    for (i, k) in keys.iter().enumerate() {
        let name = key(schema, k.index);
        let direction = if k.descending { -1 } else { 1 };
        if spec.contains_key(name) {
            // An earlier key on the same column already decides; a later one cannot.
            continue;
        }
        if k.column.nullable {
            // true (null) sorts after false: last ascending, first descending.
            spec.insert(null_flag(i), direction);
        }
        spec.insert(name, direction);
    }
    spec
}

/// Documents strictly after the position `after` holds.
pub(crate) fn after(schema: &EntitySchema, after: &After) -> Result<Document> {
    let mut branches = Vec::new();
    for disjunct in after.disjuncts() {
        let mut all = Vec::with_capacity(disjunct.equal.len() + 1);
        for c in disjunct.equal.into_iter().chain([disjunct.step]) {
            all.push(Bson::Document(condition(schema, c)?));
        }
        branches.push(Bson::Document(doc! { "$and": all }));
    }
    Ok(if branches.is_empty() {
        nothing()
    } else {
        doc! { "$or": branches }
    })
}

/// One key test as a query operator.
fn condition(schema: &EntitySchema, c: Condition) -> Result<Document> {
    let name = key(schema, c.key.index);
    let bson = |v| to_bson(schema.entity, c.key.column.field, &v);
    Ok(match c.test {
        KeyTest::Equal(v) => op(name, "$eq", bson(v)?),
        // `$eq: null` also matches a missing key, which sorts with null.
        KeyTest::IsNull => op(name, "$eq", Bson::Null),
        KeyTest::IsNotNull => op(name, "$ne", Bson::Null),
        KeyTest::Greater(v) => op(name, "$gt", bson(v)?),
        KeyTest::Less(v) => op(name, "$lt", bson(v)?),
        KeyTest::GreaterOrNull(v) => {
            doc! { "$or": [op(name, "$gt", bson(v)?), op(name, "$eq", Bson::Null)] }
        }
    })
}
