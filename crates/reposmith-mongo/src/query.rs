//! Operations whose command depends on a filter or an order: find, pages,
//! count, exists, delete_where.

use mongodb::bson::{Document, doc};
use reposmith_core::{Cursor, Entity, Error, Filter, FindQuery, Result, Value};

use crate::MongoRepository;
use crate::codec::decode_raw;
use crate::executor::{InSession, aggregate_raw, find_docs, find_sorted};
use crate::keyset::{after, cursor_of, decode_cursor, null_flags, sort_keys, sort_spec};
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
    let keys = sort_keys(schema, &query.order)?;
    let mut matcher = filter_doc(schema, query.filter.node())?;
    if let Some(cursor) = &query.after {
        let values = decode_cursor(schema, &keys, cursor)?;
        matcher = doc! { "$and": [matcher, after(schema, &keys, &values)?] };
    }
    let limit = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let Some(flags) = null_flags(&keys) else {
        let sort = sort_spec(&keys);
        return Ok(Read::Find {
            filter: matcher,
            sort,
            limit,
        });
    };
    let mut stages = vec![doc! { "$match": matcher }, flags];
    stages.push(doc! { "$sort": sort_spec(&keys) });
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

/// One page of `size` documents and the cursor after its last one when more may follow.
///
/// Fetches `size + 1`: the extra document only says whether a next page exists.
pub(crate) async fn fetch_page<E: Entity>(
    repo: &MongoRepository<E>,
    query: FindQuery<E>,
    size: u64,
) -> Result<(Vec<E>, Option<Cursor>)> {
    if size == 0 {
        let reason = "page size must be at least 1";
        return Err(Error::invalid(E::SCHEMA.entity, "page size", reason));
    }
    let keys = sort_keys(E::SCHEMA, &query.order)?;
    let mut rows = fetch(repo, query, Some(size.saturating_add(1))).await?;
    let more = rows.len() as u64 > size;
    rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    let next = match rows.last() {
        Some(last) if more => Some(cursor_of(&keys, last)),
        _ => None,
    };
    let items = rows
        .into_iter()
        .map(E::from_values)
        .collect::<Result<_>>()?;
    Ok((items, next))
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
