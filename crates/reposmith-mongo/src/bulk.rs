//! `insert_many`: all or nothing, in batches.
//!
//! When the deployment has transactions (a replica set or sharded cluster,
//! [`MongoCapabilities::transactions`](crate::MongoCapabilities)) and the
//! call holds at most [`TRANSACTION_LIMIT`] documents, they are inserted in
//! one transaction: a failure aborts it and nothing stays. Dropping the
//! future mid-way drops the session, and the driver aborts its open
//! transaction. Larger calls, and standalone servers, insert ordered
//! batches and, after a failure, delete the documents already inserted
//! again: all or nothing for the final state, but other readers may see the
//! rows meanwhile. The limit exists because MongoDB advises against
//! transactions over ~1,000s of documents (60 s lifetime, cache pressure),
//! and SecantusDB fails to commit one of 100k documents (a WiredTiger
//! "conflict between concurrent operations" surfaced as InternalError).
//!
//! Inside a unit of work the batches are sent in the unit's transaction,
//! which makes them all or nothing whatever their number.
//!
//! A duplicate key in any document is [`Error::Conflict`] naming the index
//! and field, as for a single insert. Every document is checked against the
//! server's size limit before the first one is sent.

use mongodb::ClientSession;
use mongodb::bson::{Bson, Document, doc};
use reposmith_core::{Entity, IdStrategy, Result};

use crate::MongoRepository;
use crate::codec::encode;
use crate::counter;
use crate::error::failed_index;
use crate::executor::InSession;
use crate::write::stamp_new;

/// Documents per `insert` command: bounded so each command finishes well
/// within the operation deadline (the driver splits further at 48 MB).
const BATCH: usize = 1_000;

/// Most documents inserted in one transaction; larger calls compensate instead.
const TRANSACTION_LIMIT: usize = 10_000;

/// Inserts `entities`; all or nothing.
pub(crate) async fn insert_many<E: Entity>(
    repo: &MongoRepository<E>,
    entities: &[E],
) -> Result<u64> {
    if entities.is_empty() {
        return Ok(0);
    }
    let docs = prepare(repo, entities).await?;
    if repo.exec.in_unit() {
        in_unit(repo, &docs).await?;
    } else if repo.backend.capabilities().transactions && docs.len() <= TRANSACTION_LIMIT {
        in_transaction(repo, &docs).await?;
    } else {
        compensated(repo, &docs).await?;
    }
    Ok(docs.len() as u64)
}

/// Stamped, encoded, size-checked documents; identity ids come from one
/// block reserved after every document passed (an i64 id has the same
/// size whatever its value).
async fn prepare<E: Entity>(repo: &MongoRepository<E>, entities: &[E]) -> Result<Vec<Document>> {
    let schema = E::SCHEMA;
    let mut docs = Vec::with_capacity(entities.len());
    let rows = entities
        .iter()
        .map(Entity::to_values)
        .collect::<Result<Vec<_>>>()?;
    // Missing embeddings are computed before anything is sent (and before a
    // transaction opens): a model call must not hold one open.
    let fills = repo.missing_embeddings(&rows).await?;
    for (row, mut values) in rows.into_iter().enumerate() {
        fills.apply(row, &mut values);
        reposmith_core::vector::check_row(schema, &values)?;
        stamp_new(schema, &mut values);
        let doc = encode(schema, &values)?;
        repo.check_size(&doc)?;
        docs.push(doc);
    }
    if schema.id_strategy == IdStrategy::Identity {
        let first = counter::reserve(repo, entities.len() as u64).await?;
        for (doc, id) in docs.iter_mut().zip(first..) {
            doc.insert("_id", id);
        }
    }
    Ok(docs)
}

/// Inside a unit of work: its transaction makes the batches all or nothing.
async fn in_unit<E: Entity>(repo: &MongoRepository<E>, docs: &[Document]) -> Result<()> {
    for batch in docs.chunks(BATCH) {
        repo.send("insert", async |s| {
            let command = repo.collection.insert_many(batch).ordered(true);
            command.in_session(s).await
        })
        .await?;
    }
    Ok(())
}

async fn in_transaction<E: Entity>(repo: &MongoRepository<E>, docs: &[Document]) -> Result<()> {
    let client = repo.backend.client();
    let mut session = repo.run("start session", client.start_session()).await?;
    repo.run("start transaction", session.start_transaction())
        .await?;
    if let Err(error) = insert_batches(repo, docs, &mut session).await {
        // The insert error is what the caller needs; an abort failure only
        // means the server will time the transaction out itself.
        let _ = repo
            .run("abort transaction", session.abort_transaction())
            .await;
        return Err(error);
    }
    repo.run("commit transaction", session.commit_transaction())
        .await
}

async fn insert_batches<E: Entity>(
    repo: &MongoRepository<E>,
    docs: &[Document],
    session: &mut ClientSession,
) -> Result<()> {
    for batch in docs.chunks(BATCH) {
        let command = repo
            .collection
            .insert_many(batch)
            .ordered(true)
            .session(&mut *session);
        repo.run("insert", command).await?;
    }
    Ok(())
}

/// Without transactions: ordered batches, and on failure the documents of
/// this call that were inserted (those before the failing one) are deleted again.
async fn compensated<E: Entity>(repo: &MongoRepository<E>, docs: &[Document]) -> Result<()> {
    for (n, batch) in docs.chunks(BATCH).enumerate() {
        let command = repo.collection.insert_many(batch).ordered(true);
        let error = match repo.run_raw("insert", command).await? {
            Ok(_) => continue,
            Err(error) => error,
        };
        // An ordered insert stops at the failing document; with no index
        // reported, assume the whole batch may have gone in.
        let failed = failed_index(&error).unwrap_or(batch.len());
        let inserted = &docs[..n * BATCH + failed];
        undo(repo, inserted).await?;
        return Err(repo.map_error(error));
    }
    Ok(())
}

/// Deletes `inserted` again, [`BATCH`] documents per `delete` command, one
/// `_id` equality statement each: served by the `_id` index everywhere, where
/// one `$in` of 1,000 ids made SecantusDB scan the collection (4 s on 20k
/// documents; one of 25k ids ran for over 10 minutes).
async fn undo<E: Entity>(repo: &MongoRepository<E>, inserted: &[Document]) -> Result<()> {
    for chunk in inserted.chunks(BATCH) {
        let deletes: Vec<Bson> = chunk
            .iter()
            .filter_map(|d| d.get("_id").cloned())
            .map(|id| Bson::Document(doc! { "q": { "_id": { "$eq": id } }, "limit": 1 }))
            .collect();
        let command = doc! {
            "delete": repo.collection.name(),
            "deletes": deletes,
            "ordered": false,
        };
        let reply = repo
            .run("delete", repo.backend.database().run_command(command))
            .await?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            let reason = format!(
                "undoing a failed insert_many: {} deletes failed",
                errors.len()
            );
            return Err(reposmith_core::Error::Backend {
                backend: reposmith_core::Backend::Mongo,
                code: None,
                reason,
            });
        }
    }
    Ok(())
}
