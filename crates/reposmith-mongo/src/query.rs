//! Operations whose command depends on a filter or an order: find, pages,
//! count, exists, delete_where.

use mongodb::bson::{Document, doc};
use reposmith_core::keyset::Keyset;
use reposmith_core::{Entity, Filter, FindQuery, Result, Value};

use crate::MongoRepository;
use crate::codec::decode_raw;
use crate::executor::{InSession, aggregate_raw, find_docs, find_sorted};
use crate::keyset::{after, null_flags, sort_spec};
use crate::render::filter_doc;

/// Every document matching `filter`, in no particular order.
pub(crate) async fn find_all<E: Entity>(
    repo: &MongoRepository<E>,
    filter: Document,
) -> Result<Vec<Document>> {
    repo.send("find", async |s| {
        find_docs(&repo.collection, filter, s).await
    })
    .await
}

/// How a query is read: a plain `find` when no sort key is nullable (the
/// server's sort already is the order), else an aggregation that computes
/// the null flags first (see the `keyset` module).
enum Read {
    Find {
        filter: Document,
        sort: Document,
        limit: Option<i64>,
    },
    Aggregate(Vec<Document>),
}

/// The read of `query`: match (with the keyset position), null flags for
/// nullable sort keys, sort, limit.
fn read<E: Entity>(query: &FindQuery<E>, limit: Option<u64>) -> Result<Read> {
    let schema = E::SCHEMA;
    let keyset = Keyset::new(&query.order)?;
    let keys = keyset.keys();
    let mut matcher = filter_doc(schema, query.filter.node())?;
    if let Some(cursor) = &query.after {
        let position = after(schema, &keyset.after(cursor)?)?;
        matcher = doc! { "$and": [matcher, position] };
    }
    let limit = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let Some(flags) = null_flags(schema, keys) else {
        let sort = sort_spec(schema, keys);
        return Ok(Read::Find {
            filter: matcher,
            sort,
            limit,
        });
    };
    let mut stages = vec![doc! { "$match": matcher }, flags];
    stages.push(doc! { "$sort": sort_spec(schema, keys) });
    if let Some(limit) = limit {
        stages.push(doc! { "$limit": limit });
    }
    Ok(Read::Aggregate(stages))
}

/// The documents of `query`, at most `limit`, as schema-ordered values.
pub(crate) async fn fetch<E: Entity>(
    repo: &MongoRepository<E>,
    query: FindQuery<E>,
    limit: Option<u64>,
) -> Result<Vec<Vec<Value>>> {
    // MongoDB reads `$limit: 0` as an error, SQL's LIMIT 0 as no rows.
    if limit == Some(0) {
        return Ok(Vec::new());
    }
    let docs = match read(&query, limit)? {
        Read::Find {
            filter,
            sort,
            limit,
        } => {
            repo.send("find", async |s| {
                find_sorted(&repo.collection, filter, sort, limit, s).await
            })
            .await?
        }
        Read::Aggregate(stages) => {
            repo.send("aggregate", async |s| {
                aggregate_raw(&repo.collection, stages, s).await
            })
            .await?
        }
    };
    docs.iter().map(|d| decode_raw(E::SCHEMA, d)).collect()
}

/// How many documents match `filter`.
pub(crate) async fn count<E: Entity>(repo: &MongoRepository<E>, filter: Filter<E>) -> Result<u64> {
    let filter = filter_doc(E::SCHEMA, filter.node())?;
    repo.send("count", async |s| {
        repo.collection.count_documents(filter).in_session(s).await
    })
    .await
}

/// Whether a document matches `filter`: the first match's `_id` only.
pub(crate) async fn exists<E: Entity>(
    repo: &MongoRepository<E>,
    filter: Filter<E>,
) -> Result<bool> {
    let filter = filter_doc(E::SCHEMA, filter.node())?;
    Ok(repo
        .send("find", async |s| {
            let command = repo.collection.find_one(filter);
            command.projection(doc! { "_id": 1 }).in_session(s).await
        })
        .await?
        .is_some())
}

/// Deletes every document matching `filter`; returns how many.
pub(crate) async fn delete_where<E: Entity>(
    repo: &MongoRepository<E>,
    filter: Filter<E>,
) -> Result<u64> {
    let filter = filter_doc(E::SCHEMA, filter.node())?;
    let done = repo
        .send("delete", async |s| {
            repo.collection.delete_many(filter).in_session(s).await
        })
        .await?;
    Ok(done.deleted_count)
}
