//! Where a repository's commands run: on the client (each command its own
//! implicit session) or, inside a unit of work, on the unit's
//! [`ClientSession`] and its transaction.
//!
//! Every command of [`MongoRepository`](crate::MongoRepository) is written
//! once, as an async closure that receives `Option<&mut ClientSession>` and
//! attaches it with [`InSession::in_session`]; the repository's `send`
//! decides which session, if any, the closure gets (see `unit.rs` for
//! what happens when such a command fails or is dropped).

use std::sync::Arc;

use futures_util::TryStreamExt;
use mongodb::action::{
    CountDocuments, Delete, FindOne, FindOneAndUpdate, InsertMany, InsertOne, RunCommand, Update,
};
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::{ClientSession, Collection};

use crate::unit::UnitShared;

/// The session a repository's commands run in.
#[derive(Clone)]
pub(crate) enum Executor {
    /// No explicit session: each command stands alone.
    Client,
    /// The session of a unit of work, shared by its repositories.
    Unit(Arc<UnitShared>),
}

impl Executor {
    /// True when commands already run inside a transaction the caller owns.
    pub(crate) fn in_unit(&self) -> bool {
        matches!(self, Executor::Unit(_))
    }
}

/// A driver command that can be attached to an explicit session.
pub(crate) trait InSession<'a>: Sized {
    /// `self` attached to `session`.
    fn attach(self, session: &'a mut ClientSession) -> Self;

    /// `self` attached to `session` when there is one.
    fn in_session(self, session: Option<&'a mut ClientSession>) -> Self {
        match session {
            Some(session) => self.attach(session),
            None => self,
        }
    }
}

/// Each driver action has its own inherent `session` method; this names them.
macro_rules! in_session {
    ($($action:ty),* $(,)?) => {$(
        impl<'a> InSession<'a> for $action {
            fn attach(self, session: &'a mut ClientSession) -> Self {
                self.session(session)
            }
        }
    )*};
}

in_session!(
    FindOne<'a, Document>,
    FindOne<'a, RawDocumentBuf>,
    FindOneAndUpdate<'a, Document>,
    InsertOne<'a>,
    InsertMany<'a>,
    Delete<'a>,
    Update<'a>,
    CountDocuments<'a>,
    RunCommand<'a>,
);

/// The `_id`s of every document `filter` matches, read in `session` when
/// there is one.
pub(crate) async fn find_ids(
    collection: &Collection<Document>,
    filter: Document,
    session: Option<&mut ClientSession>,
) -> mongodb::error::Result<Vec<Bson>> {
    let find = collection.find(filter).projection(doc! { "_id": 1 });
    let docs: Vec<Document> = match session {
        Some(session) => {
            let mut cursor = find.session(&mut *session).await?;
            cursor.stream(session).try_collect().await?
        }
        None => find.await?.try_collect().await?,
    };
    Ok(docs
        .into_iter()
        .filter_map(|mut d| d.remove("_id"))
        .collect())
}

/// Every document `filter` matches, read in `session` when there is one.
pub(crate) async fn find_docs(
    collection: &Collection<Document>,
    filter: Document,
    session: Option<&mut ClientSession>,
) -> mongodb::error::Result<Vec<Document>> {
    match session {
        Some(session) => {
            let mut cursor = collection.find(filter).session(&mut *session).await?;
            cursor.stream(session).try_collect().await
        }
        None => collection.find(filter).await?.try_collect().await,
    }
}

/// The documents `filter` matches in `sort` order, at most `limit`, read
/// in `session` when there is one, as the server sent them: the caller
/// decodes each once (see `codec::decode_raw`) instead of through a
/// [`Document`] of owned values first.
pub(crate) async fn find_sorted(
    collection: &Collection<Document>,
    filter: Document,
    sort: Document,
    limit: Option<i64>,
    session: Option<&mut ClientSession>,
) -> mongodb::error::Result<Vec<RawDocumentBuf>> {
    let collection = collection.clone_with_type::<RawDocumentBuf>();
    let find = collection.find(filter).sort(sort);
    let find = match limit {
        Some(limit) => find.limit(limit),
        None => find,
    };
    match session {
        Some(session) => {
            let mut cursor = find.session(&mut *session).await?;
            cursor.stream(session).try_collect().await
        }
        None => find.await?.try_collect().await,
    }
}

/// [`aggregate_docs`], the documents as the server sent them.
pub(crate) async fn aggregate_raw(
    collection: &Collection<Document>,
    pipeline: Vec<Document>,
    session: Option<&mut ClientSession>,
) -> mongodb::error::Result<Vec<RawDocumentBuf>> {
    match session {
        Some(session) => {
            let command = collection.aggregate(pipeline).session(&mut *session);
            let mut cursor = command.with_type::<RawDocumentBuf>().await?;
            cursor.stream(session).try_collect().await
        }
        None => {
            let cursor = collection.aggregate(pipeline).with_type::<RawDocumentBuf>();
            cursor.await?.try_collect().await
        }
    }
}

/// The documents `pipeline` yields, run in `session` when there is one.
pub(crate) async fn aggregate_docs(
    collection: &Collection<Document>,
    pipeline: Vec<Document>,
    session: Option<&mut ClientSession>,
) -> mongodb::error::Result<Vec<Document>> {
    match session {
        Some(session) => {
            let command = collection.aggregate(pipeline).session(&mut *session);
            let mut cursor = command.await?;
            cursor.stream(session).try_collect().await
        }
        None => collection.aggregate(pipeline).await?.try_collect().await,
    }
}
