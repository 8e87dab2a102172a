//! Identity ids (`IdStrategy::Identity`: `i64`, `i32` or `i16`) for
//! MongoDB, which has no sequences: one counter document per collection in
//! `reposmith_counters`, `{_id: <collection>, seq: <last id handed out>}`,
//! advanced atomically by `findAndModify` with `$inc`. A bulk insert
//! reserves its whole block in one call. Ids are increasing and never
//! reused; an aborted insert leaves a gap, as a Postgres sequence does.
//!
//! The counter never passes the largest value of the id's type
//! (`i16::MAX` for an `i16` id, `i32::MAX` for an `i32` one): the `$inc`
//! applies only while the whole block fits, so a reservation that would go
//! beyond is refused with [`Error::InvalidInput`] naming the id field, and
//! the counter stays where it was (smaller reservations still fit). It never
//! wraps. The id is stored as the width the field has: Int32 for `i16` and
//! `i32` ids, Int64 for `i64` ones.

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use reposmith_core::{Backend, Entity, EntitySchema, Error, Result, Value};

use crate::MongoRepository;

/// The collection holding the counters.
pub const COUNTERS: &str = "reposmith_counters";

/// Attempts at a reservation that lost a race to create the counter.
const ATTEMPTS: u32 = 3;

/// The largest id `schema`'s identity column can hold.
fn max_id(schema: &EntitySchema) -> i64 {
    schema
        .id_column()
        .ty
        .integer_bounds()
        .map_or(i64::MAX, |(_, max)| max)
}

/// Identity id `n` as a value of the id field's width.
pub(crate) fn id_value(schema: &EntitySchema, n: i64) -> Value {
    Value::integer_of(n, &schema.id_column().ty).unwrap_or(Value::I64(n))
}

/// Identity id `n` as the BSON the id field's width stores (Int32 or Int64).
pub(crate) fn id_bson(schema: &EntitySchema, n: i64) -> Bson {
    match id_value(schema, n) {
        Value::I16(n) => Bson::Int32(i32::from(n)),
        Value::I32(n) => Bson::Int32(n),
        _ => Bson::Int64(n),
    }
}

/// Reserves `n` ids for `E`'s collection and returns the first. Refused,
/// with the counter left as it was, when the block would pass the largest
/// value of the id's type.
pub(crate) async fn reserve<E: Entity>(repo: &MongoRepository<E>, n: u64) -> Result<i64> {
    let schema = E::SCHEMA;
    let max = max_id(schema);
    let Some(n) = i64::try_from(n).ok().filter(|&n| n <= max) else {
        return Err(exhausted(schema, None, n));
    };
    let counters = repo.backend.database().collection::<Document>(COUNTERS);
    // Matches only while the block fits; when the counter exists and is too
    // near the end, the upsert's insert collides with it (duplicate key).
    let filter = doc! { "_id": schema.collection, "seq": { "$lte": max - n } };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let command = counters
            .find_one_and_update(filter.clone(), doc! { "$inc": { "seq": n } })
            .upsert(true)
            .return_document(ReturnDocument::After);
        match repo.run("reserve ids", command).await {
            Ok(Some(counter)) => return last_seq(&counter).map(|last| last - n + 1),
            Ok(None) => break,
            // The counter exists beyond the filter: too near the end, or
            // created by a racing first reservation (then the loser retries).
            Err(Error::Conflict { .. }) => {
                let current = counters.find_one(doc! { "_id": schema.collection });
                let current = repo.run("read the id counter", current).await?;
                let seq = current.as_ref().map(last_seq).transpose()?;
                if seq.is_some_and(|seq| seq > max - n) {
                    return Err(exhausted(schema, seq, n as u64));
                }
                if attempt >= ATTEMPTS {
                    return Err(Error::Backend {
                        backend: Backend::Mongo,
                        code: None,
                        reason: "the id counter kept conflicting".into(),
                    });
                }
            }
            Err(other) => return Err(other),
        }
    }
    Err(Error::Backend {
        backend: Backend::Mongo,
        code: None,
        reason: "the id counter returned no document".into(),
    })
}

/// No identity id is left for `wanted` more in `schema`'s collection.
fn exhausted(schema: &EntitySchema, seq: Option<i64>, wanted: u64) -> Error {
    let id = schema.id_column();
    let ty = id.ty.integer_name().unwrap_or("i64");
    let at = seq.map_or_else(String::new, |seq| format!(" stands at {seq} and"));
    let reason = format!(
        "no identity id left: the id counter of collection `{}`{at} cannot hand out {wanted} \
         more without passing {}, the largest {ty} (widen the id field and its column, or \
         assign ids with #[repo(id(assigned))])",
        schema.collection,
        max_id(schema),
    );
    Error::invalid(schema.entity, id.field, reason)
}

fn last_seq(counter: &Document) -> Result<i64> {
    counter
        .get("seq")
        .and_then(|seq| seq.as_i64().or_else(|| seq.as_i32().map(i64::from)))
        .ok_or_else(|| Error::Backend {
            backend: Backend::Mongo,
            code: None,
            reason: "the id counter holds no integer `seq`".into(),
        })
}

#[cfg(test)]
mod tests {
    use reposmith_core::{ColumnDef, ColumnRole, ColumnType, IdStrategy};

    use super::*;

    static COLUMNS: [ColumnDef; 1] =
        [ColumnDef::new("id", "id", ColumnType::SmallInt, false).with_role(ColumnRole::Id)];
    static SCHEMA: EntitySchema =
        EntitySchema::new("Tiny", "tinies", &COLUMNS, 0, IdStrategy::Identity, &[]);

    #[test]
    fn ids_take_the_id_fields_width_and_exhaustion_names_the_limit() {
        assert_eq!(max_id(&SCHEMA), 32_767);
        assert_eq!(id_value(&SCHEMA, 7), Value::I16(7));
        assert_eq!(id_bson(&SCHEMA, 7), Bson::Int32(7));
        let err = exhausted(&SCHEMA, Some(32_760), 10);
        assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "id"));
        assert_eq!(
            err.to_string(),
            "invalid Tiny.id: no identity id left: the id counter of collection `tinies` stands \
             at 32760 and cannot hand out 10 more without passing 32767, the largest i16 (widen \
             the id field and its column, or assign ids with #[repo(id(assigned))])"
        );
    }
}
