//! Partial updates on MongoDB: `patch` is one `findAndModify` with
//! `$set`/`$inc`/`$unset` on the document's `_id` (and version), so it is
//! atomic without a transaction; `update_where` is one `update` of many
//! documents when only the count is asked for.
//!
//! When the rows are asked for (`.returning()`), or the entity's writes
//! invalidate a cache, `update_where` reads the `_id`s its filter matches
//! and then applies the update to each of those documents that still
//! matches, one `findAndModify` each, returning the document as written:
//! exactly the updated rows are returned and invalidated. Each document is
//! updated atomically, the set of them is not: outside a unit of work a
//! document that starts matching after that read is not updated, and a
//! reader may see some documents updated before others. In a unit of work
//! all of it is in the unit's transaction.
//!
//! JSON path assignments are dotted keys (`meta.a.b`); `$set` creates the
//! objects missing on the way, as the PostgreSQL rendering does. Unlike
//! PostgreSQL, a NULL document is not turned into `{}` first (the server
//! refuses the path), and `add` on a NULL is refused by the server.
//!
//! A `json_set` through a scalar (PathNotViable, code 28) is
//! `InvalidInput` naming the field and path, as on PostgreSQL.
//!
//! The update document is held to the server's document size limit before
//! it is sent ([`Error::TooLarge`] naming the largest assigned field), as
//! inserted documents are.
//!
//! An integer `add` whose result would leave the field's type is refused
//! as [`Error::InvalidInput`] naming the field, and writes nothing: MongoDB
//! itself would store a wider integer (an `i32` past its range becomes an
//! `i64`) that then fails every read of the document. Each update's filter
//! requires the stored value to be in the add's [`AddRange`]; a patch that
//! misses because of it is reported so, and `update_where` first looks for
//! a matching document outside the range and refuses the whole update when
//! there is one (a document that leaves the range after that look is
//! skipped, never overflowed).

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use reposmith_core::changes::{
    AddRange, AssignOp, add_ranges, embed_changes, expected_version, json_path_through_scalar,
    patch_miss, updated_at_stamp,
};
use reposmith_core::{Changes, Entity, EntitySchema, Error, FieldType, Filter, Result, Value};

use crate::MongoRepository;
use crate::cache::may_have_written;
use crate::codec::{decode_id, json_to_bson, key, to_bson, to_millis};
use crate::executor::{InSession, find_ids};
use crate::render::filter_doc;
use crate::write::id_text;

/// A checked update, ready to send.
pub(crate) struct Prepared {
    /// The update document (`$set`, `$inc`, `$unset`).
    update: Document,
    /// The ranges the stored values of its integer `$inc`s must be in.
    ranges: Vec<AddRange>,
    /// The checked assignments, to name a field in the server's refusals.
    parts: Vec<(usize, AssignOp)>,
}

/// MongoDB's PathNotViable: a `$set` of a dotted path through a scalar.
const PATH_NOT_VIABLE: &str = "28";

/// The server's refusal of an update of `parts` as the typed error both
/// backends give: a `json_set` through a scalar names the field and path
/// ([`json_path_through_scalar`]).
fn refusal(schema: &EntitySchema, parts: &[(usize, AssignOp)], error: Error) -> Error {
    match &error {
        Error::Backend {
            code: Some(code), ..
        } if code == PATH_NOT_VIABLE => json_path_through_scalar(schema, parts).unwrap_or(error),
        _ => error,
    }
}

/// The update document of `changes`: checked, re-embedded, every value
/// converted as insert converts it; `updated_at` set and the version
/// incremented.
pub(crate) async fn prepare<E: Entity>(
    repo: &MongoRepository<E>,
    changes: Changes<E>,
) -> Result<Prepared> {
    changes.validate()?;
    let schema = E::SCHEMA;
    let mut parts = changes.into_parts();
    embed_changes(schema, repo.embedder.as_deref(), &mut parts).await?;
    let (mut set, mut inc, mut unset) = (Document::new(), Document::new(), Document::new());
    for (column, op) in &parts {
        let field = schema.columns[*column].field;
        let name = key(schema, *column);
        match op {
            AssignOp::Set(value) => {
                set.insert(name, to_bson(schema.entity, field, value)?);
            }
            AssignOp::Add(delta) => {
                inc.insert(name, to_bson(schema.entity, field, delta)?);
            }
            AssignOp::JsonSet { path, value } => {
                set.insert(
                    dotted(name, path),
                    json_to_bson(schema.entity, field, value)?,
                );
            }
            AssignOp::JsonRemove { path } => {
                unset.insert(dotted(name, path), "");
            }
            other => {
                let reason = format!("not supported by MongoDB: {other:?}");
                return Err(Error::invalid(schema.entity, field, reason));
            }
        }
    }
    if let Some((i, value)) = updated_at_stamp(schema, to_millis(repo.backend.clock().now())) {
        let field = schema.columns[i].field;
        set.insert(key(schema, i), to_bson(schema.entity, field, &value)?);
    }
    if let Some((i, version)) = schema.version_column() {
        let one = match version.ty {
            reposmith_core::ColumnType::BigInt => Bson::Int64(1),
            _ => Bson::Int32(1),
        };
        inc.insert(key(schema, i), one);
    }
    let mut update = Document::new();
    for (operator, operand) in [("$set", set), ("$inc", inc), ("$unset", unset)] {
        // MongoDB refuses an empty operator document.
        if !operand.is_empty() {
            update.insert(operator, operand);
        }
    }
    // Like an inserted document, the update must fit the server's limit:
    // refused here, naming the field, before a 16 MiB upload is refused.
    let limit = repo.backend.capabilities().max_bson_object_size;
    crate::size::check_update(schema, &update, limit)?;
    let ranges = add_ranges(schema, &parts);
    Ok(Prepared {
        update,
        ranges,
        parts,
    })
}

/// `{$or: [{k: null}, {k: {$gte: low, $lte: high}}]}` per range: every
/// `$inc` keeps its field in its type (a NULL or missing field passes: the
/// server refuses `$inc` on NULL itself).
fn in_ranges(schema: &EntitySchema, ranges: &[AddRange]) -> Result<Vec<Bson>> {
    ranges
        .iter()
        .map(|range| {
            let (low, high) = (
                bound(schema, range, range.low)?,
                bound(schema, range, range.high)?,
            );
            let name = key(schema, range.column);
            Ok(Bson::Document(doc! { "$or": [
                { name: Bson::Null },
                { name: { "$gte": low, "$lte": high } },
            ] }))
        })
        .collect()
}

/// `{$or: [{k: {$lt: low}}, {k: {$gt: high}}, ..]}`: some `$inc` would
/// leave its field's type.
fn outside_ranges(schema: &EntitySchema, ranges: &[AddRange]) -> Result<Document> {
    let mut outside = Vec::new();
    for range in ranges {
        let name = key(schema, range.column);
        outside.push(doc! { name: { "$lt": bound(schema, range, range.low)? } });
        outside.push(doc! { name: { "$gt": bound(schema, range, range.high)? } });
    }
    Ok(doc! { "$or": outside })
}

/// `n` as BSON of the range's column width.
fn bound(schema: &EntitySchema, range: &AddRange, n: i64) -> Result<Bson> {
    let def = &schema.columns[range.column];
    let value = Value::integer_of(n, &def.ty).unwrap_or(Value::I64(n));
    to_bson(schema.entity, def.field, &value)
}

/// The stored integers of `columns` in `stored` (`None` where absent,
/// NULL or not an integer).
fn integers(
    schema: &EntitySchema,
    stored: &Document,
    columns: &[usize],
) -> Vec<(usize, Option<i64>)> {
    columns
        .iter()
        .map(|&i| {
            let n = match stored.get(key(schema, i)) {
                Some(Bson::Int32(n)) => Some(i64::from(*n)),
                Some(Bson::Int64(n)) => Some(*n),
                _ => None,
            };
            (i, n)
        })
        .collect()
}

/// `column.k1.k2`: the path keys were checked by the core (no `.`, no
/// leading `$`, no NUL).
fn dotted(column: &str, path: &[String]) -> String {
    std::iter::once(column)
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(".")
}

/// The patch of the document `id`: the document as written, or why none was.
pub(crate) async fn patch<E: Entity>(
    repo: &MongoRepository<E>,
    id: &E::Id,
    prepared: Prepared,
    expected: Option<i64>,
) -> Result<E> {
    let schema = E::SCHEMA;
    // A tenant entity's repository without a tenant refuses before anything is sent.
    repo.scope.check()?;
    let Prepared {
        update,
        ranges,
        parts,
    } = prepared;
    let expected = expected_version(schema, expected)?;
    let id_value = id.to_value();
    let id_bson = to_bson(schema.entity, schema.id_column().field, &id_value)?;
    let mut filter = doc! { "_id": { "$eq": id_bson.clone() } };
    if let Some((i, version)) = &expected {
        let field = schema.columns[*i].field;
        let version = to_bson(schema.entity, field, version)?;
        filter.insert(key(schema, *i), doc! { "$eq": version });
    }
    if !ranges.is_empty() {
        filter.insert("$and", in_ranges(schema, &ranges)?);
    }
    // The repository's row scope (live documents, unless the `with_deleted` view).
    let filter = repo.within(filter, &repo.scope)?;
    let stored = repo
        .send("update", async |s| {
            let command = repo.collection.find_one_and_update(filter, update);
            let command = command.return_document(ReturnDocument::After);
            command.in_session(s).await
        })
        .await
        .map_err(|e| refusal(schema, &parts, e))?;
    match stored {
        Some(stored) => E::from_values(crate::codec::decode(schema, &stored)?),
        None => Err(miss(repo, id_bson, &id_value, expected, &ranges).await?),
    }
}

/// Why a patch matched nothing, from the document as it is now: see
/// [`patch_miss`].
async fn miss<E: Entity>(
    repo: &MongoRepository<E>,
    id: Bson,
    id_value: &Value,
    expected: Option<(usize, Value)>,
    ranges: &[AddRange],
) -> Result<Error> {
    let schema = E::SCHEMA;
    let columns: Vec<usize> = expected
        .iter()
        .map(|(i, _)| *i)
        .chain(ranges.iter().map(|r| r.column))
        .collect();
    let mut projection = doc! { "_id": 1 };
    for &i in &columns {
        projection.insert(key(schema, i), 1);
    }
    let filter = repo.within(doc! { "_id": { "$eq": id } }, &repo.scope)?;
    let found = repo
        .send("update", async |s| {
            let command = repo.collection.find_one(filter);
            command.projection(projection).in_session(s).await
        })
        .await?;
    let stored = found.map(|doc| integers(schema, &doc, &columns));
    Ok(patch_miss(
        schema,
        id_text(id_value),
        expected.as_ref(),
        ranges,
        stored.as_deref(),
    ))
}

/// `update_where`: how many documents were updated, and the updated
/// documents when `returning` (see the module docs for when each document
/// is updated by a command of its own).
pub(crate) async fn update_where<E: Entity>(
    repo: &MongoRepository<E>,
    filter: Filter<E>,
    prepared: Prepared,
    returning: bool,
) -> Result<(u64, Vec<E>)> {
    let Prepared {
        update,
        ranges,
        parts,
    } = prepared;
    let refused = |e| refusal(E::SCHEMA, &parts, e);
    let mut filter = filter_doc(E::SCHEMA, repo.scoped(filter)?.node())?;
    if !ranges.is_empty() {
        refuse_overflow(repo, &filter, &ranges).await?;
        let mut all = vec![Bson::Document(filter)];
        all.extend(in_ranges(E::SCHEMA, &ranges)?);
        filter = doc! { "$and": all };
    }
    if !returning && !repo.invalidates() {
        let done = repo
            .send("update", async |s| {
                let command = repo.collection.update_many(filter, update);
                command.in_session(s).await
            })
            .await
            .map_err(refused)?;
        return Ok((done.matched_count, Vec::new()));
    }
    update_found(repo, filter, update).await.map_err(refused)
}

/// Refuses an `update_where` when a document `filter` matches holds a
/// value that one of its `$inc`s would take out of its type.
async fn refuse_overflow<E: Entity>(
    repo: &MongoRepository<E>,
    filter: &Document,
    ranges: &[AddRange],
) -> Result<()> {
    let schema = E::SCHEMA;
    let outside = doc! { "$and": [filter.clone(), outside_ranges(schema, ranges)?] };
    let columns: Vec<usize> = ranges.iter().map(|r| r.column).collect();
    let mut projection = doc! { "_id": 1 };
    for &i in &columns {
        projection.insert(key(schema, i), 1);
    }
    let found = repo
        .send("find", async |s| {
            let command = repo.collection.find_one(outside);
            command.projection(projection).in_session(s).await
        })
        .await?;
    let Some(found) = found else {
        return Ok(());
    };
    let stored = integers(schema, &found, &columns);
    for range in ranges {
        let value = stored
            .iter()
            .find_map(|(c, n)| (*c == range.column).then_some(*n).flatten());
        if let Some(value) = value.filter(|v| !range.admits(*v)) {
            return Err(range.refusal(schema, value));
        }
    }
    Ok(())
}

/// [`update_where`] one document at a time: the `_id`s `filter` matches
/// now, then each of those documents if it still matches, invalidated
/// once written (or once a failure may have written it).
async fn update_found<E: Entity>(
    repo: &MongoRepository<E>,
    filter: Document,
    update: Document,
) -> Result<(u64, Vec<E>)> {
    let schema = E::SCHEMA;
    let matched = filter.clone();
    let ids = repo
        .send("find", async |s| {
            find_ids(&repo.collection, matched, s).await
        })
        .await?;
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let value = decode_id(schema, &id)?;
        let one = doc! { "$and": [{ "_id": { "$eq": id } }, filter.clone()] };
        let sent = repo
            .send("update", async |s| {
                let command = repo.collection.find_one_and_update(one, update.clone());
                let command = command.return_document(ReturnDocument::After);
                command.in_session(s).await
            })
            .await;
        match sent {
            Ok(Some(stored)) => {
                repo.invalidate(std::slice::from_ref(&value)).await;
                rows.push(E::from_values(crate::codec::decode(schema, &stored)?)?);
            }
            // No longer matching: not updated.
            Ok(None) => {}
            Err(error) => {
                if may_have_written(&error) {
                    repo.invalidate(std::slice::from_ref(&value)).await;
                }
                return Err(error);
            }
        }
    }
    Ok((rows.len() as u64, rows))
}
