//! Identity ids (`IdStrategy::Identity`, `i64`) for MongoDB, which has no
//! sequences: one counter document per collection in `reposmith_counters`,
//! `{_id: <collection>, seq: <last id handed out>}`, advanced atomically by
//! `findAndModify` with `$inc`. A bulk insert reserves its whole block in
//! one call. Ids are increasing and never reused; an aborted insert leaves
//! a gap, as a Postgres sequence does.

use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;
use reposmith_core::{Backend, Entity, Error, Result};

use crate::MongoRepository;

/// The collection holding the counters.
pub const COUNTERS: &str = "reposmith_counters";

/// Reserves `n` ids for `E`'s collection and returns the first.
pub(crate) async fn reserve<E: Entity>(repo: &MongoRepository<E>, n: u64) -> Result<i64> {
    let n = i64::try_from(n)
        .map_err(|_| Error::invalid(E::SCHEMA.entity, "id", "too many ids at once"))?;
    let counters = repo.backend.database().collection::<Document>(COUNTERS);
    let filter = doc! { "_id": E::SCHEMA.collection };
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
            // Two first-ever reservations can race to create the counter; the loser retries.
            Err(Error::Conflict { .. }) if attempt < 3 => {}
            Err(other) => return Err(other),
        }
    }
    Err(Error::Backend {
        backend: Backend::Mongo,
        code: None,
        reason: "the id counter returned no document".into(),
    })
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
