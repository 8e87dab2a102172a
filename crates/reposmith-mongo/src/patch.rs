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
//! refuses the path), and `add` on a NULL is refused by the server. An
//! `add` whose result leaves an `i16` or `i32` field's range is stored as
//! MongoDB computes it (a wider integer) and then fails to read back as
//! [`Error::Decode`]; PostgreSQL refuses it as [`Error::InvalidInput`].

use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use reposmith_core::changes::{AssignOp, embed_changes, expected_version, updated_at_stamp};
use reposmith_core::{Changes, Entity, Error, FieldType, Filter, Result, Value};

use crate::MongoRepository;
use crate::cache::may_have_written;
use crate::codec::{decode_id, json_to_bson, key, to_bson, to_millis};
use crate::executor::{InSession, find_ids};
use crate::render::filter_doc;
use crate::write::id_text;

/// The update document of `changes`: checked, re-embedded, every value
/// converted as insert converts it; `updated_at` set and the version
/// incremented.
pub(crate) async fn prepare<E: Entity>(
    repo: &MongoRepository<E>,
    changes: Changes<E>,
) -> Result<Document> {
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
    if let Some((i, value)) = updated_at_stamp(schema, to_millis(chrono::Utc::now())) {
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
    Ok(update)
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
    update: Document,
    expected: Option<i64>,
) -> Result<E> {
    let schema = E::SCHEMA;
    let expected = expected_version(schema, expected)?;
    let id_value = id.to_value();
    let id_bson = to_bson(schema.entity, schema.id_column().field, &id_value)?;
    let mut filter = doc! { "_id": { "$eq": id_bson.clone() } };
    if let Some((i, version)) = &expected {
        let field = schema.columns[*i].field;
        let version = to_bson(schema.entity, field, version)?;
        filter.insert(key(schema, *i), doc! { "$eq": version });
    }
    // The repository's row scope (live documents, unless the `with_deleted` view).
    let filter = repo.within(filter, &repo.scope)?;
    let stored = repo
        .send("update", async |s| {
            let command = repo.collection.find_one_and_update(filter, update);
            let command = command.return_document(ReturnDocument::After);
            command.in_session(s).await
        })
        .await?;
    match stored {
        Some(stored) => E::from_values(crate::codec::decode(schema, &stored)?),
        None => Err(miss(repo, id_bson, &id_value, expected).await?),
    }
}

/// Why a patch matched nothing: the document is gone, or its version moved on.
async fn miss<E: Entity>(
    repo: &MongoRepository<E>,
    id: Bson,
    id_value: &Value,
    expected: Option<(usize, Value)>,
) -> Result<Error> {
    let schema = E::SCHEMA;
    let filter = repo.within(doc! { "_id": { "$eq": id } }, &repo.scope)?;
    let exists = repo
        .send("update", async |s| {
            let command = repo.collection.find_one(filter);
            command.projection(doc! { "_id": 1 }).in_session(s).await
        })
        .await?
        .is_some();
    Ok(match expected {
        Some((_, version)) if exists => Error::StaleVersion {
            entity: schema.entity,
            id: id_text(id_value),
            expected: version.as_integer().unwrap_or(0),
        },
        _ => Error::NotFound {
            entity: schema.entity,
            id: id_text(id_value),
        },
    })
}

/// `update_where`: how many documents were updated, and the updated
/// documents when `returning` (see the module docs for when each document
/// is updated by a command of its own).
pub(crate) async fn update_where<E: Entity>(
    repo: &MongoRepository<E>,
    filter: Filter<E>,
    update: Document,
    returning: bool,
) -> Result<(u64, Vec<E>)> {
    let filter = filter_doc(E::SCHEMA, repo.scoped(filter).node())?;
    if !returning && !repo.invalidates() {
        let done = repo
            .send("update", async |s| {
                let command = repo.collection.update_many(filter, update);
                command.in_session(s).await
            })
            .await?;
        return Ok((done.matched_count, Vec::new()));
    }
    update_found(repo, filter, update).await
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
