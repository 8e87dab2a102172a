//! Operations whose command depends on a filter or an order: find, pages,
//! count, exists, delete_where (a `delete`, or an `update` stamping the
//! soft-delete key). Filters arrive already restricted to the repository's
//! row scope (`MongoRepository::scoped`).

use mongodb::bson::{Bson, Document, doc};
use reposmith_core::cache::CachedRow;
use reposmith_core::keyset::Keyset;
use reposmith_core::stamp::SoftDeleteStamp;
use reposmith_core::{Backend, Entity, Error, Filter, FindQuery, Result, Value};

use crate::MongoRepository;
use crate::cache::{check_cached, may_have_written};
use crate::codec::{decode_id, decode_raw};
use crate::executor::{InSession, aggregate_raw, find_docs, find_ids, find_sorted};
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
#[derive(Clone)]
enum Read {
    Find {
        filter: Document,
        sort: Document,
        limit: Option<i64>,
    },
    Aggregate(Vec<Document>),
}

impl Read {
    /// What kind of command it is and the command as one document, for the
    /// key of a cached query.
    fn rendered(&self) -> (&'static str, Document) {
        match self {
            Read::Find {
                filter,
                sort,
                limit,
            } => {
                let limit = limit.map_or(Bson::Null, Bson::Int64);
                let command = doc! { "filter": filter, "sort": sort, "limit": limit };
                ("find", command)
            }
            Read::Aggregate(stages) => ("aggregate", doc! { "pipeline": stages }),
        }
    }
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

/// The documents of `query`, at most `limit`, as schema-ordered values;
/// through the cache when the query is `.cached(..)` (see the `cache`
/// module): the cached rows are these values, keyed by the rendered read.
pub(crate) async fn fetch<E: Entity>(
    repo: &MongoRepository<E>,
    query: FindQuery<E>,
    limit: Option<u64>,
) -> Result<Vec<Vec<Value>>> {
    check_cached::<E>(query.cached)?;
    // MongoDB reads `$limit: 0` as an error, SQL's LIMIT 0 as no rows.
    if limit == Some(0) {
        return Ok(Vec::new());
    }
    let read = read(&query, limit)?;
    if query.cached.is_none() {
        return load(repo, read).await;
    }
    let hash = || {
        let (kind, command) = read.rendered();
        repo.query_hash(kind, &command)
    };
    let load = || async {
        let rows = load(repo, read.clone()).await?;
        let row = |values| CachedRow {
            values,
            ..CachedRow::default()
        };
        Ok(rows.into_iter().map(row).collect())
    };
    let rows = repo.cached_rows(query.cached, hash, load).await?;
    Ok(rows.into_iter().map(|row| row.values).collect())
}

/// The documents `read` reads, as schema-ordered values.
async fn load<E: Entity>(repo: &MongoRepository<E>, read: Read) -> Result<Vec<Vec<Value>>> {
    let docs = match read {
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

/// `_id` equality statements per `delete` command in a cached entity's
/// `delete_where`: one statement per id, served by the `_id` index (an
/// `$in` of many ids made SecantusDB scan the collection, see `bulk`).
const DELETE_BATCH: usize = 1_000;

/// Deletes every document matching `filter` (soft-deletes them with
/// `soft`); returns how many.
///
/// For an entity whose writes invalidate a cache, the matching `_id`s are
/// read first and each of those documents is deleted if it still matches,
/// so exactly the deleted rows are invalidated; a document that starts
/// matching after that read is not deleted (see the `cache` module).
pub(crate) async fn delete_where<E: Entity>(
    repo: &MongoRepository<E>,
    filter: Filter<E>,
    soft: Option<SoftDeleteStamp>,
) -> Result<u64> {
    let filter = filter_doc(E::SCHEMA, filter.node())?;
    if let Some(stamp) = soft {
        return soft_delete_where(repo, filter, stamp).await;
    }
    if repo.invalidates() {
        return delete_found(repo, filter).await;
    }
    let done = repo
        .send("delete", async |s| {
            repo.collection.delete_many(filter).in_session(s).await
        })
        .await?;
    Ok(done.deleted_count)
}

/// [`delete_where`] of a cached entity: the ids `filter` matches now, then
/// those documents, each only if it still matches, [`DELETE_BATCH`] per
/// `delete` command, each batch invalidated once it was sent.
async fn delete_found<E: Entity>(repo: &MongoRepository<E>, filter: Document) -> Result<u64> {
    let schema = E::SCHEMA;
    let matched = filter.clone();
    let ids = repo
        .send("find", async |s| {
            find_ids(&repo.collection, matched, s).await
        })
        .await?;
    let mut deleted = 0u64;
    for chunk in ids.chunks(DELETE_BATCH) {
        let values = chunk
            .iter()
            .map(|id| decode_id(schema, id))
            .collect::<Result<Vec<_>>>()?;
        let deletes: Vec<Bson> = chunk
            .iter()
            .map(|id| {
                let q = doc! { "$and": [{ "_id": { "$eq": id } }, filter.clone()] };
                Bson::Document(doc! { "q": q, "limit": 1 })
            })
            .collect();
        let mut command = doc! {
            "delete": repo.collection.name(),
            "deletes": deletes,
            "ordered": true,
        };
        // A command run by hand gets no write concern from the client; a
        // transaction has its own.
        if !repo.exec.in_unit()
            && let Some(concern) = repo.backend.database().write_concern()
            && let Ok(concern) = mongodb::bson::serialize_to_document(concern)
        {
            command.insert("writeConcern", concern);
        }
        let database = repo.backend.database();
        let sent = repo
            .send("delete", async |s| {
                database.run_command(command).in_session(s).await
            })
            .await;
        let reply = match sent.and_then(|reply| delete_reply(schema.entity, &reply)) {
            Ok(n) => n,
            Err(error) => {
                if may_have_written(&error) {
                    repo.invalidate(&values).await;
                }
                return Err(error);
            }
        };
        repo.invalidate(&values).await;
        deleted += reply;
    }
    Ok(deleted)
}

/// The soft delete of every document matching `filter`: one `updateMany`
/// setting the soft-delete key (and `updated_at`) to now and incrementing
/// the version. A cached entity's matching ids are read first and the
/// update is limited to them, so exactly those are invalidated.
async fn soft_delete_where<E: Entity>(
    repo: &MongoRepository<E>,
    filter: Document,
    stamp: SoftDeleteStamp,
) -> Result<u64> {
    let schema = E::SCHEMA;
    let key = |i| crate::codec::key(schema, i);
    let now = Bson::DateTime(mongodb::bson::DateTime::from_millis(
        repo.backend.clock().now().timestamp_millis(),
    ));
    let mut set = doc! { key(stamp.column): now.clone() };
    if let Some(i) = stamp.updated_at {
        set.insert(key(i), now);
    }
    let mut update = doc! { "$set": set };
    if let Some(i) = stamp.version {
        update.insert("$inc", doc! { key(i): 1_i64 });
    }
    if !repo.invalidates() {
        let done = repo
            .send("update", async |s| {
                repo.collection
                    .update_many(filter, update)
                    .in_session(s)
                    .await
            })
            .await?;
        return Ok(done.modified_count);
    }
    let matched = filter.clone();
    let ids = repo
        .send("find", async |s| {
            find_ids(&repo.collection, matched, s).await
        })
        .await?;
    let mut deleted = 0u64;
    for chunk in ids.chunks(DELETE_BATCH) {
        let values = chunk
            .iter()
            .map(|id| decode_id(schema, id))
            .collect::<Result<Vec<_>>>()?;
        let chunk: Vec<Bson> = chunk.to_vec();
        let limited = doc! { "$and": [{ "_id": { "$in": chunk } }, filter.clone()] };
        let update = update.clone();
        let sent = repo
            .send("update", async |s| {
                repo.collection
                    .update_many(limited, update)
                    .in_session(s)
                    .await
            })
            .await;
        if sent.as_ref().is_ok() || sent.as_ref().is_err_and(may_have_written) {
            repo.invalidate(&values).await;
        }
        deleted += sent?.modified_count;
    }
    Ok(deleted)
}

/// How many documents a `delete` command's reply says it deleted; its
/// write errors and write concern error as [`Error::Backend`].
fn delete_reply(entity: &str, reply: &Document) -> Result<u64> {
    let failed = |what: &str, detail: String| Error::Backend {
        backend: Backend::Mongo,
        code: None,
        reason: format!("delete_where of {entity}: {what}: {detail}"),
    };
    if let Ok(errors) = reply.get_array("writeErrors")
        && !errors.is_empty()
    {
        return Err(failed("a delete failed", format!("{:?}", errors[0])));
    }
    if let Ok(concern) = reply.get_document("writeConcernError") {
        return Err(failed("the write concern failed", format!("{concern:?}")));
    }
    let n = match reply.get("n") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        _ => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}
