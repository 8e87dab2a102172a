//! `insert_many_unordered`: stores every document it can and reports the
//! others one by one, for ingestion (traces, chat logs) where one bad or
//! duplicate document must not stop thousands of good ones.
//!
//! # Steps
//!
//! 0. Missing `#[repo(embed(from = ".."))]` vectors are computed by the
//!    repository's embedder, in batches, before anything is sent; a model
//!    failure fails the whole call with [`Error::Embedding`] (it would fail
//!    every document alike) and nothing is written.
//! 1. Each document is checked as a single insert checks it (vector
//!    dimensions and finiteness, encoding, the server's size limit) after
//!    being stamped (generated id, version, timestamps). One that fails
//!    becomes a [`RowFailure`] with that typed error and is not sent.
//! 2. Identity (integer) ids are reserved in one block for the documents that
//!    passed, in their order, so a refused document consumes no id.
//! 3. The passing documents go out in `insert` commands of at most
//!    [`BATCH`] documents and [`BATCH_BYTES`] bytes (so the driver never
//!    splits one into several wire messages), with `ordered: false`: the server stores every document it can and returns a
//!    write error, with its position, for each one it refused. Positions are
//!    mapped back to the caller's slice and classified as for a single
//!    insert: a duplicate key (against stored documents, or another
//!    document of the same call) is [`Error::Conflict`] naming the index
//!    and its field; any other refusal (document validation, ...) is
//!    [`Error::Backend`] with the server's code. Of two documents of one
//!    call with the same key, the one applied first is stored: batches go
//!    out in order and a replica set applies a batch in order, so that is
//!    the earlier one; MongoDB promises no order for unordered writes in
//!    general (a sharded cluster applies them per shard).
//!
//! # When the call fails as a whole
//!
//! [`InsertReport`] only reports documents whose outcome is known. When a
//! command fails as a whole (connection lost, the operation deadline,
//! not-primary after a failover, ...), the driver may have delivered any
//! part of its batch, and the server may have stored any part of what it
//! received. The call then stops: later batches are not sent, and it
//! returns `Err(`[`Error::CommitOutcomeUnknown`]`)` whose reason names the
//! failing batch's positions, the underlying error, and how many documents
//! of this call were confirmed stored (and refused) before it. The caller
//! reconciles before sending again, e.g. by sending the whole slice again
//! when its documents carry their own ids or unique keys: those already
//! stored come back as [`Error::Conflict`] failures. The one exception is a
//! command that provably never left the client (no server could be
//! selected) before anything of this call was stored: then nothing was
//! written and the mapped error ([`Error::Connect`]) is returned as is.
//! (When earlier batches did store documents, such a command still ends the
//! call with [`Error::CommitOutcomeUnknown`], its reason saying the batch
//! was not sent: the caller cannot tell from an `Err` which documents of
//! the slice are stored.)
//!
//! A write-concern error means the batch was applied on the primary without
//! the acknowledgement asked for; it fails the call too, as
//! [`Error::Backend`] with the server's code and the same account of what
//! was stored before.
//!
//! # Units of work
//!
//! Refused inside a unit of work with [`Error::InvalidInput`] (field
//! `insert_many_unordered`), before anything is sent and without harming
//! the unit: on MongoDB a write error inside a transaction aborts the whole
//! transaction, so the unit could not keep the documents that were stored.
//! Inside a unit use `insert_many`, which is all or nothing there.

use std::collections::BTreeSet;
use std::ops::Range;

use mongodb::bson::Document;
use mongodb::error::{ErrorKind, IndexedWriteError, WriteConcernError};
use reposmith_core::{
    Backend, Entity, EntitySchema, Error, IdStrategy, InsertReport, Result, RowFailure, Value,
};
use tracing::Instrument;

use crate::MongoRepository;
use crate::codec::{decode_id, encode};
use crate::counter;
use crate::error::conflict;
use crate::size::document_size;
use crate::write::stamp_new;

/// Documents per `insert` command, as for `insert_many`: bounded so each
/// command finishes well within the operation deadline.
const BATCH: usize = 1_000;

/// Most encoded bytes per `insert` command: under MongoDB's 48,000,000-byte
/// message limit with room for the command itself (one document is at most
/// 16 MiB, so a batch of one always fits).
const BATCH_BYTES: usize = 40_000_000;

/// The operation's name in spans and errors.
const OPERATION: &str = "insert_many_unordered";

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

impl<E: Entity> MongoRepository<E> {
    /// Inserts every document of `entities` that can be stored and reports
    /// the others by their position in `entities`; one refused document
    /// does not stop the rest.
    ///
    /// Documents failing the checks a single insert makes are reported and
    /// not sent ([`Error::InvalidInput`] for a bad vector or value,
    /// [`Error::TooLarge`] over the size limit); those the server refuses
    /// are reported as a single insert's error would be ([`Error::Conflict`]
    /// naming the index and field for a duplicate key). Not atomic: other
    /// readers see documents as their batch is stored. Identity ids are
    /// allocated only for the documents sent.
    ///
    /// `Err` means the call itself failed: a command failed as a whole
    /// ([`Error::CommitOutcomeUnknown`], with how many documents were
    /// confirmed stored before it), a write concern was not satisfied, ids
    /// could not be reserved, or the repository belongs to a unit of work
    /// ([`Error::InvalidInput`]). See the `unordered` module for details.
    pub async fn insert_many_unordered(&self, entities: &[E]) -> Result<InsertReport> {
        let span = tracing::info_span!(
            "reposmith.query",
            db.system = "mongodb",
            db.operation = OPERATION,
            db.collection = E::SCHEMA.collection,
            db.rows_affected = tracing::field::Empty,
            reposmith.rows_failed = tracing::field::Empty,
        );
        let stamped = self.stamped_entities(entities)?;
        let entities = stamped.as_deref().unwrap_or(entities);
        insert_unordered(self, entities).instrument(span).await
    }
}

async fn insert_unordered<E: Entity>(
    repo: &MongoRepository<E>,
    entities: &[E],
) -> Result<InsertReport> {
    let schema = E::SCHEMA;
    if repo.exec.in_unit() {
        let reason = "not available in a unit of work: a refused document aborts MongoDB's \
                      transaction, so the unit could not keep the others; use insert_many \
                      (all or nothing) in the unit, or a repository outside it";
        return Err(Error::invalid(schema.entity, OPERATION, reason));
    }
    let (docs, failures) = prepare(repo, entities).await?;
    // Invalidated whatever the outcome: any batch may have stored documents.
    let sent = match repo.invalidates() {
        true => docs
            .iter()
            .filter_map(|(_, doc)| doc.get("_id"))
            .map(|id| decode_id(schema, id))
            .collect::<Result<Vec<_>>>()?,
        false => Vec::new(),
    };
    let outcome = send(repo, &docs, failures).await;
    repo.invalidate(&sent).await;
    outcome
}

/// Sends the prepared `docs` in unordered batches; `failures` are those
/// refused before sending.
async fn send<E: Entity>(
    repo: &MongoRepository<E>,
    docs: &[(usize, Document)],
    mut failures: Vec<RowFailure>,
) -> Result<InsertReport> {
    let schema = E::SCHEMA;
    let mut inserted = 0u64;
    for range in batches(docs) {
        let unsent = docs.len() - range.end;
        let batch = &docs[range];
        let sent = batch.iter().map(|(_, doc)| doc);
        let command = repo.collection.insert_many(sent).ordered(false);
        let error = match repo.run_raw("insert", command).await {
            Ok(Ok(_)) => {
                inserted += batch.len() as u64;
                continue;
            }
            Ok(Err(error)) => error,
            // The deadline dropped the command mid-flight.
            Err(timeout) => {
                let progress = Progress::new(inserted, failures.len(), batch, unsent);
                return Err(progress.unknown(&timeout));
            }
        };
        let progress = Progress::new(inserted, failures.len(), batch, unsent);
        let (write_errors, write_concern) = match &*error.kind {
            ErrorKind::InsertMany(e) => (e.write_errors.as_deref(), e.write_concern_error.as_ref()),
            _ => (None, None),
        };
        if let Some(concern) = write_concern {
            return Err(progress.write_concern(concern));
        }
        match write_errors {
            Some(refused) if !refused.is_empty() => {
                let refused = refused_in_batch(schema, batch, refused);
                inserted += (batch.len() - refused.len()) as u64;
                failures.extend(refused);
            }
            _ if never_sent(&error) && inserted == 0 => return Err(repo.map_error(error)),
            _ if never_sent(&error) => return Err(progress.not_sent(&repo.map_error(error))),
            _ => return Err(progress.unknown(&repo.map_error(error))),
        }
    }
    tracing::Span::current().record("db.rows_affected", inserted);
    tracing::Span::current().record("reposmith.rows_failed", failures.len());
    Ok(InsertReport::new(inserted, failures))
}

/// Consecutive ranges of `docs`, each at most [`BATCH`] documents and
/// [`BATCH_BYTES`] encoded bytes. The byte bound keeps every batch one wire
/// command: the driver splits a larger `insert_many` at 48 MB, and a later
/// part failing as a whole would hide that earlier parts were stored.
fn batches(docs: &[(usize, Document)]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, doc)) in docs.iter().enumerate() {
        let size = document_size(doc);
        if i > start && (i - start == BATCH || bytes + size > BATCH_BYTES) {
            ranges.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < docs.len() {
        ranges.push(start..docs.len());
    }
    ranges
}

/// The documents to send, each with its position in `entities`, stamped,
/// encoded and checked; and a failure for each document that did not pass.
/// Identity ids come from one block reserved for the passing documents only
/// (checked before: an integer id has the same size whatever its value).
async fn prepare<E: Entity>(
    repo: &MongoRepository<E>,
    entities: &[E],
) -> Result<(Vec<(usize, Document)>, Vec<RowFailure>)> {
    let schema = E::SCHEMA;
    let mut docs = Vec::with_capacity(entities.len());
    let mut failures = Vec::new();
    let mut rows = Vec::with_capacity(entities.len());
    for (index, entity) in entities.iter().enumerate() {
        match entity.to_values() {
            Ok(values) => rows.push((index, values)),
            Err(error) => failures.push(RowFailure::new(index, error)),
        }
    }
    // The model is called once per batch of texts, before anything is sent;
    // its failure is the whole call's (it would fail every document alike).
    let values: Vec<Vec<Value>> = rows.iter().map(|(_, v)| v.clone()).collect();
    let fills = repo.missing_embeddings(&values).await?;
    for (row, (index, mut values)) in rows.into_iter().enumerate() {
        fills.apply(row, &mut values);
        match checked(repo, values) {
            Ok(doc) => docs.push((index, doc)),
            Err(error) => failures.push(RowFailure::new(index, error)),
        }
    }
    if schema.id_strategy == IdStrategy::Identity && !docs.is_empty() {
        let first = counter::reserve(repo, docs.len() as u64).await?;
        for ((_, doc), id) in docs.iter_mut().zip(first..) {
            doc.insert("_id", counter::id_bson(schema, id));
        }
    }
    Ok((docs, failures))
}

/// An entity's values (embeddings filled) as the document a single insert
/// would send, or why not.
fn checked<E: Entity>(repo: &MongoRepository<E>, mut values: Vec<Value>) -> Result<Document> {
    let schema = E::SCHEMA;
    reposmith_core::vector::check_row(schema, &values)?;
    stamp_new(schema, &mut values, repo.backend.clock());
    let doc = encode(schema, &values)?;
    repo.check_size(&doc)?;
    Ok(doc)
}

/// The server's per-document refusals in `batch`, at the caller's positions.
fn refused_in_batch(
    schema: &EntitySchema,
    batch: &[(usize, Document)],
    refused: &[IndexedWriteError],
) -> Vec<RowFailure> {
    // One write error per refused document; deduplicated so a server that
    // repeated one could not make the inserted count wrong.
    let mut seen = BTreeSet::new();
    refused
        .iter()
        .filter(|e| e.index < batch.len() && seen.insert(e.index))
        .map(|e| RowFailure::new(batch[e.index].0, classify(schema, e)))
        .collect()
}

/// A refused document's error, as a single insert of it would report it:
/// a duplicate key names the index and its field. Server messages carry no
/// connection string, so they are kept as they are.
fn classify(schema: &EntitySchema, refused: &IndexedWriteError) -> Error {
    if refused.code == DUPLICATE_KEY {
        return conflict(schema, &refused.message);
    }
    let name = refused.code_name.as_deref().unwrap_or("write error");
    Error::Backend {
        backend: Backend::Mongo,
        code: Some(refused.code.to_string()),
        reason: format!("{name}: {}", refused.message),
    }
}

/// True when the command provably never reached a server: none could be
/// selected, so nothing of it can have been stored.
pub(crate) fn never_sent(error: &mongodb::error::Error) -> bool {
    matches!(
        &*error.kind,
        ErrorKind::ServerSelection { .. } | ErrorKind::DnsResolve { .. }
    )
}

/// Where the call stood when a batch failed as a whole, for its error.
struct Progress {
    /// Documents confirmed stored by earlier batches.
    inserted: u64,
    /// Documents refused so far, by the checks or by the server.
    refused: usize,
    /// The failing batch's first and last positions in the caller's slice.
    first: usize,
    last: usize,
    /// Documents in the failing batch.
    size: usize,
    /// Prepared documents after the failing batch, never sent.
    unsent: usize,
}

impl Progress {
    /// `batch` failed after `inserted` documents were stored and `refused`
    /// were refused; `unsent` prepared documents come after it.
    fn new(inserted: u64, refused: usize, batch: &[(usize, Document)], unsent: usize) -> Progress {
        Progress {
            inserted,
            refused,
            first: batch.first().map_or(0, |(i, _)| *i),
            last: batch.last().map_or(0, |(i, _)| *i),
            size: batch.len(),
            unsent,
        }
    }

    /// What is known about the call's other documents.
    fn account(&self) -> String {
        format!(
            "{} documents of this call were confirmed stored before it and {} refused; \
             {} prepared documents after it were not sent",
            self.inserted, self.refused, self.unsent
        )
    }

    /// The batch's command failed as a whole with `cause`: each of its
    /// documents may or may not be stored.
    fn unknown(&self, cause: &Error) -> Error {
        let reason = format!(
            "{OPERATION} stopped: the insert of the {} documents at positions {}..={} failed \
             as a whole ({cause}), so each of them may or may not be stored; {}",
            self.size,
            self.first,
            self.last,
            self.account()
        );
        Error::CommitOutcomeUnknown {
            backend: Backend::Mongo,
            reason,
        }
    }

    /// The batch's command never reached a server (`cause`), after earlier
    /// batches stored documents: the call as a whole is partial, and the
    /// error says so even though none of this batch is stored.
    fn not_sent(&self, cause: &Error) -> Error {
        let reason = format!(
            "{OPERATION} stopped: the insert of the {} documents at positions {}..={} could \
             not be sent ({cause}), so none of them is stored; {}",
            self.size,
            self.first,
            self.last,
            self.account()
        );
        Error::CommitOutcomeUnknown {
            backend: Backend::Mongo,
            reason,
        }
    }

    /// The batch was applied without the write concern's acknowledgement.
    fn write_concern(&self, concern: &WriteConcernError) -> Error {
        let reason = format!(
            "{OPERATION} stopped: the documents at positions {}..={} were written but the \
             write concern was not satisfied ({}: {}); {}",
            self.first,
            self.last,
            concern.code_name,
            concern.message,
            self.account()
        );
        Error::Backend {
            backend: Backend::Mongo,
            code: Some(concern.code.to_string()),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{deserialize_from_document, doc};
    use reposmith_core::{ColumnDef, ColumnRole, ColumnType, IndexDef, IndexMethod};

    use super::*;

    static COLUMNS: [ColumnDef; 2] = [
        ColumnDef::new("key", "key", ColumnType::Text, false).with_role(ColumnRole::Id),
        ColumnDef::new("name", "name", ColumnType::Text, false).with_unique(),
    ];
    static INDEXES: [IndexDef; 1] = [IndexDef::new(
        "t_name_key",
        &["name"],
        true,
        IndexMethod::BTree,
    )];
    static SCHEMA: EntitySchema =
        EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::Assigned, &INDEXES);

    /// A write error as the server sends it (the driver's type is not constructible).
    fn write_error(index: i32, code: i32, message: &str) -> IndexedWriteError {
        let reply = doc! { "index": index, "code": code, "errmsg": message };
        deserialize_from_document(reply).unwrap()
    }

    #[test]
    fn write_errors_map_to_the_callers_positions_and_are_classified() {
        // Positions 4 and 6 of the caller's slice were refused before sending.
        let batch: Vec<(usize, Document)> = [3, 5, 7].map(|i| (i, Document::new())).into();
        let duplicate = "E11000 duplicate key error collection: db.t index: t_name_key dup key: { name: \"a\" }";
        let refused = [
            write_error(1, DUPLICATE_KEY, duplicate),
            write_error(2, 121, "Document failed validation"),
            write_error(1, DUPLICATE_KEY, duplicate),
        ];
        let failures = refused_in_batch(&SCHEMA, &batch, &refused);
        let indexes: Vec<usize> = failures.iter().map(|f| f.index).collect();
        assert_eq!(indexes, vec![5, 7]);
        assert!(matches!(&failures[0].error,
            Error::Conflict { field: Some("name"), constraint, .. } if constraint == "t_name_key"));
        assert!(matches!(&failures[1].error,
            Error::Backend { code: Some(code), .. } if code == "121"));
    }

    #[test]
    fn batches_are_bounded_by_count_and_by_bytes() {
        use mongodb::bson::{Binary, doc, spec::BinarySubtype};
        let small: Vec<(usize, Document)> =
            (0..2_500).map(|i| (i, doc! { "n": i as i64 })).collect();
        assert_eq!(batches(&small), [0..1_000, 1_000..2_000, 2_000..2_500]);
        let blob = |mb: usize| {
            let bytes = vec![0u8; mb * 1_000_000];
            doc! { "b": Binary { subtype: BinarySubtype::Generic, bytes } }
        };
        let big: Vec<(usize, Document)> = (0..7).map(|i| (i, blob(15))).collect();
        assert_eq!(
            batches(&big),
            [0..2, 2..4, 4..6, 6..7],
            "two 15 MB documents per command"
        );
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn a_stopped_call_says_what_was_stored_and_sent() {
        let batch: Vec<(usize, Document)> = [1_000, 1_999].map(|i| (i, Document::new())).into();
        let progress = Progress::new(998, 2, &batch, 500);
        let cause = Error::ConnectionLost {
            backend: Backend::Mongo,
            reason: "eof".into(),
        };
        let unknown = progress.unknown(&cause).to_string();
        assert!(unknown.contains("positions 1000..=1999"), "{unknown}");
        assert!(unknown.contains("may or may not be stored"), "{unknown}");
        assert!(
            unknown.contains("998 documents of this call were confirmed stored before it and 2 refused; 500 prepared documents after it were not sent"),
            "{unknown}"
        );
        let not_sent = progress.not_sent(&cause).to_string();
        assert!(not_sent.contains("none of them is stored"), "{not_sent}");
    }
}
