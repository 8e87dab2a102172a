//! `insert_many`: all or nothing, in batches.
//!
//! When the deployment has transactions (a replica set or sharded cluster,
//! [`MongoCapabilities::transactions`](crate::MongoCapabilities)) and the
//! call holds at most [`TRANSACTION_LIMIT`] documents, they are inserted in
//! one transaction, run as a unit of work runs (see `in_transaction`): a
//! failure aborts it and nothing stays, a transient abort runs it again,
//! and a commit without an answer is [`Error::CommitOutcomeUnknown`].
//! Dropping the future mid-way drops the session, and the driver aborts its
//! open transaction. Larger calls, and standalone servers, insert ordered
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
//!
//! # Batch sizes
//!
//! Each `insert` command must finish well within the operation deadline,
//! which bounds it over the whole command. Rather than a fixed count, the
//! batches follow the server's measured pace: the first carries
//! [`FIRST_BATCH`] documents, and each next one as many bytes as the
//! previous pace delivers in [`DEADLINE_SHARE`] of the deadline (at most
//! [`GROWTH`] times the previous batch's documents, [`MAX_BATCH`] documents
//! and [`MAX_BATCH_BYTES`] bytes, and at least one document). On a server
//! inserting 5,000 documents a second and the default 30 s deadline, 100k
//! documents go in 7 commands instead of 100.
//!
//! Fewer commands matter because a server's per-command work is not only
//! the documents: SecantusDB keeps a record of every retryable write (the
//! driver makes each `insert` outside a transaction one) for 30 minutes,
//! up to 10,000 of them, and on every retryable write scans them all twice
//! and, once full, sorts them; measured on 2026-11-24, a one-document
//! `insert` cost its server 1.4 ms of CPU when fresh and 9 to 24 ms once
//! full. 100 commands of 1,000 documents then cost seconds more server CPU
//! than the single command the raw driver sends for 100k.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::Collection;
use mongodb::bson::{Bson, RawDocumentBuf, doc};
use reposmith_core::{Backend, Entity, Error, IdStrategy, Result, RetryPolicy};

use crate::MongoRepository;
use crate::codec::{decode_id, encode_raw};
use crate::counter;
use crate::error::failed_index;
use crate::executor::InSession;
use crate::size;
use crate::unordered::never_sent;
use crate::write::stamp_new;

/// Documents in a call's first `insert` command, which measures the pace.
const FIRST_BATCH: usize = 1_000;

/// A command is sized to take at most this fraction of the operation
/// deadline at the previous command's pace: room for the server to slow
/// down eightfold between two commands before a deadline is at risk.
const DEADLINE_SHARE: u32 = 8;

/// A batch holds at most this many times the previous batch's documents,
/// so one fast command cannot extrapolate to a huge next one.
const GROWTH: usize = 10;

/// Most documents per command: MongoDB's `maxWriteBatchSize`.
const MAX_BATCH: usize = 100_000;

/// Most bytes per command, so each batch is one wire message (the driver's
/// limit is 48 MB) and the deadline covers one server round.
const MAX_BATCH_BYTES: usize = 40_000_000;

/// Documents per `delete` command when undoing a failed call.
const UNDO_BATCH: usize = 1_000;

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
    let prepared = prepare(repo, entities).await?;
    let count = prepared.docs.len() as u64;
    // Invalidated whatever the outcome once anything was sent: a
    // compensated insert may have stored documents (readable meanwhile)
    // before deleting them again.
    let inserted = match repo.invalidates() {
        true => ids(&prepared.docs)
            .iter()
            .map(|id| decode_id(E::SCHEMA, id))
            .collect::<Result<Vec<_>>>()?,
        false => Vec::new(),
    };
    let collection = repo.collection.clone_with_type::<RawDocumentBuf>();
    let batches = Batches::new(repo.backend.operation_timeout());
    let outcome = if repo.exec.in_unit() {
        in_unit(repo, &collection, &prepared.docs, batches).await
    } else if repo.backend.capabilities().transactions && prepared.docs.len() <= TRANSACTION_LIMIT {
        in_transaction(repo, &collection, prepared.docs, batches).await
    } else {
        compensated(repo, &collection, &prepared, batches).await
    };
    repo.invalidate(&inserted).await;
    outcome.map(|()| count)
}

/// The documents of one call, and which of their ids the call generated
/// (nil uuids, zero ObjectIds, identity ids) rather than the caller gave.
struct Prepared {
    docs: Vec<RawDocumentBuf>,
    generated: Vec<bool>,
}

/// Stamped, encoded, size-checked documents, encoded once as they go on the
/// wire; identity ids come from one block reserved after every document
/// passed (an integer id has the same size whatever its value).
async fn prepare<E: Entity>(repo: &MongoRepository<E>, entities: &[E]) -> Result<Prepared> {
    let schema = E::SCHEMA;
    let limit = repo.backend.capabilities().max_bson_object_size;
    let identity = schema.id_strategy == IdStrategy::Identity;
    let mut docs = Vec::with_capacity(entities.len());
    let total = entities.len();
    let rows = entities
        .iter()
        .enumerate()
        .map(|(i, entity)| entity.to_values().map_err(|e| e.at_row(i, total)))
        .collect::<Result<Vec<_>>>()?;
    // Missing embeddings are computed before anything is sent (and before a
    // transaction opens): a model call must not hold one open.
    let fills = repo.missing_embeddings(&rows).await?;
    let mut stamped = Vec::new();
    let mut generated = Vec::with_capacity(rows.len());
    for (row, mut values) in rows.into_iter().enumerate() {
        fills.apply(row, &mut values);
        reposmith_core::vector::check_row(schema, &values).map_err(|e| e.at_row(row, total))?;
        let given = values[schema.id].clone();
        stamp_new(schema, &mut values, repo.backend.clock());
        generated.push(identity || values[schema.id] != given);
        if identity {
            // Measured with a stand-in id of the same encoded size.
            values[schema.id] = counter::id_value(schema, 0);
        }
        let doc = encode_raw(schema, &values).map_err(|e| e.at_row(row, total))?;
        size::check_raw(schema, &doc, limit).map_err(|e| e.at_row(row, total))?;
        if identity {
            stamped.push(values);
        } else {
            docs.push(doc);
        }
    }
    if identity {
        let first = counter::reserve(repo, entities.len() as u64).await?;
        for (mut values, id) in stamped.into_iter().zip(first..) {
            values[schema.id] = counter::id_value(schema, id);
            docs.push(encode_raw(schema, &values)?);
        }
    }
    Ok(Prepared { docs, generated })
}

/// Splits one call's documents into `insert` commands sized to the
/// deadline at the server's measured pace (see the module docs).
#[derive(Debug, Clone)]
struct Batches {
    /// The deadline's share one command may take.
    budget: Duration,
    /// First document of the next batch.
    next: usize,
    /// Most documents in the next batch.
    docs: usize,
    /// Most bytes in the next batch.
    bytes: usize,
}

impl Batches {
    fn new(deadline: Duration) -> Self {
        Batches {
            budget: deadline / DEADLINE_SHARE,
            next: 0,
            docs: FIRST_BATCH,
            bytes: MAX_BATCH_BYTES,
        }
    }

    /// The next batch and the position of its first document; `None` once
    /// every document was handed out.
    fn next<'d>(&mut self, all: &'d [RawDocumentBuf]) -> Option<(usize, &'d [RawDocumentBuf])> {
        let start = self.next;
        if start >= all.len() {
            return None;
        }
        let mut end = start;
        let mut bytes = 0;
        while end < all.len() && end - start < self.docs {
            let size = all[end].as_bytes().len();
            if end > start && bytes + size > self.bytes {
                break;
            }
            bytes += size;
            end += 1;
        }
        self.next = end;
        Some((start, &all[start..end]))
    }

    /// Sizes the next batch from the pace of `batch`, which took `elapsed`.
    fn took(&mut self, batch: &[RawDocumentBuf], elapsed: Duration) {
        let bytes: usize = batch.iter().map(|d| d.as_bytes().len()).sum();
        let seconds = elapsed.as_secs_f64();
        let fits = if seconds > 0.0 {
            bytes as f64 * self.budget.as_secs_f64() / seconds
        } else {
            f64::INFINITY
        };
        // `as` saturates: an unmeasurably fast batch allows the maximum.
        self.bytes = (fits as usize).clamp(1, MAX_BATCH_BYTES);
        self.docs = batch.len().saturating_mul(GROWTH).clamp(1, MAX_BATCH);
    }
}

/// Inside a unit of work: its transaction makes the batches all or nothing.
async fn in_unit<E: Entity>(
    repo: &MongoRepository<E>,
    collection: &Collection<RawDocumentBuf>,
    docs: &[RawDocumentBuf],
    mut batches: Batches,
) -> Result<()> {
    while let Some((_, batch)) = batches.next(docs) {
        let started = Instant::now();
        repo.send("insert", async |s| {
            let command = collection.insert_many(batch).ordered(true);
            command.in_session(s).await
        })
        .await?;
        batches.took(batch, started.elapsed());
    }
    Ok(())
}

/// In a transaction of its own, run as a unit of work runs (but without a
/// snapshot read concern: it reads nothing): majority writes, a commit whose unknown outcome is resent and otherwise
/// reported as [`Error::CommitOutcomeUnknown`](reposmith_core::Error) (never
/// a plain timeout a caller might retry into duplicates), and the whole
/// insert sent again after a transient abort. The documents keep their
/// stamped ids across attempts, so a retry inserts the same documents.
async fn in_transaction<E: Entity>(
    repo: &MongoRepository<E>,
    collection: &Collection<RawDocumentBuf>,
    docs: Vec<RawDocumentBuf>,
    batches: Batches,
) -> Result<()> {
    let docs: Arc<[RawDocumentBuf]> = docs.into();
    repo.backend
        .retry_transaction(RetryPolicy::default(), None, |unit| {
            let unit_repo = unit.repo_of::<E>();
            let (collection, docs) = (collection.clone(), Arc::clone(&docs));
            let batches = batches.clone();
            Box::pin(async move { in_unit(&unit_repo, &collection, &docs, batches).await })
        })
        .await
}

/// Without transactions: ordered batches, and on failure the documents of
/// this call that were stored are deleted again.
///
/// When the server answers with the failing document's position, the
/// documents before it are known to be stored by this call and are deleted
/// by `_id`. When the outcome of a batch is unknown (a missed deadline, a
/// lost reply), the server may store it later, so the call reports
/// [`Error::CommitOutcomeUnknown`]; of that batch only documents whose ids
/// this call generated are deleted: a caller-supplied id may belong to a
/// document another writer stored, which an ordered insert refused as a
/// duplicate and a delete by `_id` would destroy.
async fn compensated<E: Entity>(
    repo: &MongoRepository<E>,
    collection: &Collection<RawDocumentBuf>,
    prepared: &Prepared,
    mut batches: Batches,
) -> Result<()> {
    let docs = &prepared.docs;
    while let Some((start, batch)) = batches.next(docs) {
        let started = Instant::now();
        let command = collection.insert_many(batch).ordered(true);
        let error = match repo.run_raw("insert", command).await {
            Ok(Ok(_)) => {
                batches.took(batch, started.elapsed());
                continue;
            }
            Ok(Err(error)) => error,
            Err(timeout) => {
                let end = start + batch.len();
                return Err(unknown_outcome(repo, prepared, start..end, &timeout).await);
            }
        };
        // An ordered insert stops at the failing document; a command that
        // never reached a server stored nothing of its batch.
        let stored = match failed_index(&error) {
            Some(failed) => start + failed,
            None if never_sent(&error) => start,
            None => {
                let cause = repo.map_error(error);
                let end = start + batch.len();
                return Err(unknown_outcome(repo, prepared, start..end, &cause).await);
            }
        };
        let cause = repo.map_error(error);
        return Err(match undo(repo, ids(&docs[..stored])).await {
            Ok(()) => cause,
            Err(undo_error) => Error::Backend {
                backend: Backend::Mongo,
                code: None,
                reason: format!(
                    "{cause}; deleting the {stored} documents this insert_many stored before \
                     it failed too ({undo_error}), so they stay stored"
                ),
            },
        });
    }
    Ok(())
}

/// After the batch `unknown` of `prepared` got no answer: deletes the
/// documents stored before it and those of the batch whose ids this call
/// generated, then reports what cannot be known.
async fn unknown_outcome<E: Entity>(
    repo: &MongoRepository<E>,
    prepared: &Prepared,
    unknown: Range<usize>,
    cause: &Error,
) -> Error {
    let docs = &prepared.docs;
    let (start, end) = (unknown.start, unknown.end);
    let ours = unknown.clone().filter(|&i| prepared.generated[i]);
    let mut targets = ids(&docs[..start]);
    targets.extend(ids(ours.clone().map(|i| &docs[i])));
    let supplied = unknown.len() - ours.count();
    let undone = match undo(repo, targets).await {
        Ok(()) => format!(
            "the {start} documents stored before it and the batch's documents with \
             generated ids were deleted again"
        ),
        Err(error) => format!("deleting the documents stored so far failed too ({error})"),
    };
    let left = match supplied {
        0 => String::new(),
        n => format!(
            "; {n} documents of the batch carry ids you supplied and were left alone: \
             each may be stored by this call, or be another writer's"
        ),
    };
    Error::CommitOutcomeUnknown {
        backend: Backend::Mongo,
        reason: format!(
            "insert_many of {} documents: the insert of documents {start}..{end} got no \
             answer ({cause}); {undone}, but the server may still store that batch \
             afterwards{left}",
            docs.len()
        ),
    }
}

/// The `_id`s of `docs`.
fn ids<'d>(docs: impl IntoIterator<Item = &'d RawDocumentBuf>) -> Vec<Bson> {
    docs.into_iter()
        .filter_map(|d| d.get("_id").ok().flatten())
        .filter_map(|id| Bson::try_from(id).ok())
        .collect()
}

/// Deletes the documents with these `_id`s, [`UNDO_BATCH`] per `delete`
/// command, one `_id` equality statement each: served by the `_id` index
/// everywhere, where one `$in` of 1,000 ids made SecantusDB scan the
/// collection (4 s on 20k documents; one of 25k ids ran for over 10 minutes).
async fn undo<E: Entity>(repo: &MongoRepository<E>, ids: Vec<Bson>) -> Result<()> {
    for chunk in ids.chunks(UNDO_BATCH) {
        let deletes: Vec<Bson> = chunk
            .iter()
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
            return Err(Error::Backend {
                backend: Backend::Mongo,
                code: None,
                reason,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(n: usize, bytes: usize) -> Vec<RawDocumentBuf> {
        let filler = "x".repeat(bytes.saturating_sub(20));
        (0..n)
            .map(|i| {
                let doc = doc! { "_id": i as i64, "f": filler.as_str() };
                RawDocumentBuf::try_from(&doc).unwrap()
            })
            .collect()
    }

    #[test]
    fn batches_cover_every_document_once_in_order() {
        let all = docs(25_000, 100);
        let mut batches = Batches::new(Duration::from_secs(30));
        let mut covered = 0;
        let mut sizes = Vec::new();
        while let Some((start, batch)) = batches.next(&all) {
            assert_eq!(start, covered);
            covered += batch.len();
            sizes.push(batch.len());
            // Each batch takes 100 µs a document: 3.75 s fit 37,500.
            batches.took(batch, Duration::from_micros(100) * batch.len() as u32);
        }
        assert_eq!(covered, all.len());
        assert_eq!(sizes, [1_000, 10_000, 14_000]);
    }

    #[test]
    fn a_slow_server_gets_smaller_batches_but_never_empty_ones() {
        let all = docs(3_000, 1_000);
        let mut batches = Batches::new(Duration::from_secs(8));
        let (_, first) = batches.next(&all).unwrap();
        assert_eq!(first.len(), FIRST_BATCH);
        // 1,000 documents in 4 s: a 1 s share fits 250.
        batches.took(first, Duration::from_secs(4));
        let (_, second) = batches.next(&all).unwrap();
        assert_eq!(second.len(), 250);
        // Far slower than the deadline allows: still one document a command.
        batches.took(second, Duration::from_secs(3_600));
        let (start, third) = batches.next(&all).unwrap();
        assert_eq!((start, third.len()), (1_250, 1));
    }

    #[test]
    fn a_batch_stays_within_the_byte_bound() {
        let all = docs(20, 4_000_000);
        let mut batches = Batches::new(Duration::from_secs(30));
        let (_, first) = batches.next(&all).unwrap();
        let bytes: usize = first.iter().map(|d| d.as_bytes().len()).sum();
        assert!(
            bytes <= MAX_BATCH_BYTES && first.len() == 9,
            "{bytes} {}",
            first.len()
        );
    }
}
