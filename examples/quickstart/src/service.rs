//! A service written once against reposmith's core traits — [`DataStore`],
//! [`UnitOfWork`], [`Repository`], [`VectorSearch`] — and run unchanged on a
//! PostgreSQL entity ([`Chunk`]) and a MongoDB one ([`Trace`]). Nothing in a
//! function body names a backend: the entity's `#[repo(backend = "..")]`
//! and the handle the caller passes decide where the rows go.

use reposmith::{
    Column, DataStore, Entity, Filter, Repository, Result, RetryPolicy, Scored, StoredIn,
    UnitOfWork, Vector, VectorSearch,
};

use crate::domain::{Chunk, Trace};

/// What the service needs of an entity: a text and the embedding made from it.
pub trait Passage: Entity + Clone {
    /// The text the embedding is made from.
    const TEXT: Column<Self, String>;
    /// The embedding, filled by the repository's embedder on insert.
    const EMBEDDING: Column<Self, Option<Vector>>;

    /// The text of this passage.
    fn text(&self) -> &str;
}

impl Passage for Chunk {
    const TEXT: Column<Self, String> = Chunk::BODY;
    const EMBEDDING: Column<Self, Option<Vector>> = Chunk::EMBEDDING;

    fn text(&self) -> &str {
        &self.body
    }
}

impl Passage for Trace {
    const TEXT: Column<Self, String> = Trace::PROMPT;
    const EMBEDDING: Column<Self, Option<Vector>> = Trace::EMBEDDING;

    fn text(&self) -> &str {
        &self.prompt
    }
}

/// What one run of the service saw.
#[derive(Debug)]
pub struct Report {
    /// Rows stored by the retried unit.
    pub stored: u64,
    /// Row counts of the keyset pages walked.
    pub pages: Vec<usize>,
    /// The closest passage to the question, and its score.
    pub closest: Option<(String, f64)>,
    /// Rows a unit would have deleted but rolled back (over the limit).
    pub kept_by_rollback: u64,
    /// Rows deleted by the committed unit.
    pub deleted: u64,
}

/// Stores `items`, walks them in pages, asks a question, then deletes them:
/// the whole life of a batch of passages whose text starts with `mark`.
pub async fn run<D, E>(db: &D, mark: &str, items: Vec<E>, question: &str) -> Result<Report>
where
    D: DataStore,
    E: Passage + StoredIn<D::Home>,
{
    let ours = || E::TEXT.starts_with(mark);
    db.repo::<E>().delete_where(ours()).await?;
    let stored = store_all(db, items).await?;
    let pages = walk(&db.repo::<E>(), ours(), 2).await?;
    let closest = ask(&db.repo::<E>(), question).await?;
    let (kept, _) = delete_at_most(db.begin().await?, ours(), 1).await?;
    let (deleted, _) = delete_at_most(db.begin().await?, ours(), u64::MAX).await?;
    Ok(Report {
        stored,
        pages,
        closest: closest.map(|hit| (hit.entity.text().to_owned(), hit.score)),
        kept_by_rollback: kept,
        deleted,
    })
}

/// Inserts `items` in one unit of work, run again if the server aborts it
/// as retryable: all of them are stored, or none.
pub async fn store_all<D, E>(db: &D, items: Vec<E>) -> Result<u64>
where
    D: DataStore,
    E: Passage + StoredIn<D::Home>,
{
    db.transaction(RetryPolicy::default(), move |unit| {
        let items = items.clone();
        Box::pin(async move { unit.repo::<E>().insert_many(&items).await })
    })
    .await
}

/// The sizes of the keyset pages of `size` rows that cover `filter`.
pub async fn walk<R, E>(repo: &R, filter: Filter<E>, size: u64) -> Result<Vec<usize>>
where
    R: Repository<E>,
    E: Entity,
{
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = repo.find(filter.clone()).page_after(cursor, size).await?;
        pages.push(page.items.len());
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(pages),
        }
    }
}

/// The passage nearest `question`, embedded by the repository's embedder.
pub async fn ask<R, E>(repo: &R, question: &str) -> Result<Option<Scored<E>>>
where
    R: VectorSearch<E>,
    E: Passage,
{
    let hits = repo.nearest_to_text(E::EMBEDDING, question, 1).await?;
    Ok(hits.into_iter().next())
}

/// Deletes the rows matching `filter` in `unit` and commits, unless more
/// than `most` matched: then rolls back, and nothing is deleted. Returns how
/// many rows matched and whether the deletion was committed.
pub async fn delete_at_most<U, E>(unit: U, filter: Filter<E>, most: u64) -> Result<(u64, bool)>
where
    U: UnitOfWork,
    E: StoredIn<U::Home>,
{
    let matched = unit.repo::<E>().delete_where(filter).await?;
    if matched > most {
        unit.rollback().await?;
        return Ok((matched, false));
    }
    unit.commit().await?;
    Ok((matched, true))
}
