//! Relations between entities (`#[repo(references(Parent, ..))]`) and their
//! loading without N+1: the children of a page of parents, or the parents of
//! a page of children, in one query per relation, aligned with the page.
//!
//! The derive emits one [`Relation`] constant per referencing field
//! (`Chunk::DOCUMENT` for `document_id`), so only a declared reference can
//! be loaded: a plain column is not a `Relation` and does not compile.
//! Everything here is written once against [`Repository`], so both backends,
//! their pools and their units of work load the same way: PostgreSQL binds
//! the ids as one array (`= ANY($1)`), MongoDB sends them as one `$in`.
//!
//! A page's distinct ids travel in one query as long as they fit
//! [`KEY_BUDGET`] bytes (about 130,000 UUIDs); a larger page is split into
//! queries under it, to stay clear of MongoDB's 16 MiB command limit and
//! PostgreSQL's bind cap. A parent's children always come from one query,
//! so their order holds either way.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::hash::Hash;

use crate::Result;
use crate::entity::Entity;
use crate::filter::{Filter, FilterNode, Order};
use crate::repository::{BoxFuture, FindQuery, Repository};
use crate::schema::Reference;
use crate::value::{FieldType, Value};

/// The most bytes of ids (estimated) one loading query carries: 4 MiB.
pub const KEY_BUDGET: usize = 4 << 20;

/// The reference of child entity `C`'s column to parent entity `P`: what
/// `#[repo(references(P, ..))]` on a field of `C` declares, as a typed constant.
///
/// Only the derive builds these (one per referencing field), so holding one
/// proves the column references `P` and holds `P`'s ids.
pub struct Relation<C: Entity, P: Entity> {
    column: usize,
    key: fn(&C) -> Option<&P::Id>,
}

impl<C: Entity, P: Entity> Clone for Relation<C, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C: Entity, P: Entity> Copy for Relation<C, P> {}

impl<C: Entity, P: Entity> std::fmt::Debug for Relation<C, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl<C: Entity, P: Entity> Relation<C, P> {
    /// The relation on column `column` of `C`, whose value in a child is
    /// `key(child)` (`None` for a NULL reference). The derive emits these.
    #[doc(hidden)]
    pub const fn new(column: usize, key: fn(&C) -> Option<&P::Id>) -> Self {
        Relation { column, key }
    }

    /// Position of the referencing column in `C`'s schema.
    pub const fn column(&self) -> usize {
        self.column
    }

    /// The referenced id of `child`; `None` when its reference is NULL.
    pub fn key<'c>(&self, child: &'c C) -> Option<&'c P::Id> {
        (self.key)(child)
    }

    /// The schema's reference (target and `on_delete`).
    pub fn reference(&self) -> Option<Reference> {
        C::SCHEMA.columns[self.column].references
    }

    /// `Chunk.document_id -> Document`, for messages.
    pub fn describe(&self) -> String {
        let column = &C::SCHEMA.columns[self.column];
        format!(
            "{}.{} -> {}",
            C::SCHEMA.entity,
            column.field,
            P::SCHEMA.entity
        )
    }

    /// Children whose reference is one of `ids`.
    fn filter(&self, ids: Vec<Value>) -> Filter<C> {
        Filter::new(FilterNode::In {
            column: self.column,
            values: ids,
            negated: false,
        })
    }
}

/// Loading along [`Relation`]s, for every [`Repository`]: on a pool or in a
/// unit of work, on either backend.
///
/// With `#[repo(references(Document))] document_id` on `Chunk` (the
/// derive's reference documents a runnable example):
///
/// ```text
/// let docs: Vec<Document> = documents.find(Document::OWNER.eq(me)).limit(500).await?;
/// // the chunks of each document, aligned with `docs`, in id order
/// let per_doc: Vec<Vec<Chunk>> = chunks.load_for(&docs, Chunk::DOCUMENT).await?;
/// // the document of each chunk, aligned with `some_chunks`
/// let parent: Vec<Option<Document>> = documents.parents_of(&some_chunks, Chunk::DOCUMENT).await?;
/// ```
///
/// Loaded entities are cloned where one row belongs in several places (a
/// parent of many children, a parent listed twice), hence the `Clone` bound.
pub trait Relations<C: Entity + Clone>: Repository<C> + Sized {
    /// The children of each of `parents` along `relation`: one `Vec` per
    /// parent, in `parents`' order (a parent without children gets an empty
    /// one; a parent given twice gets its children twice). Children are in
    /// id order unless [`LoadChildren::order_by`] says otherwise. One query
    /// for the whole page (see the module docs for pages beyond
    /// [`KEY_BUDGET`]); none when `parents` is empty.
    ///
    /// `parents` is anything that yields `&P`: a slice or `&Vec`, or an
    /// iterator such as `per_user.iter().flatten()` for the grandchildren
    /// of a loaded level, without collecting (cloning) it first.
    fn load_for<'r, P>(
        &'r self,
        parents: impl IntoIterator<Item = &'r P>,
        relation: Relation<C, P>,
    ) -> LoadChildren<'r, C, P, Self>
    where
        P: Entity + 'r,
        P::Id: Hash + Eq,
    {
        LoadChildren {
            repo: self,
            parent_ids: parents.into_iter().map(Entity::id).collect(),
            relation,
            filter: Filter::all(),
            order: Vec::new(),
        }
    }

    /// The parent of each of `children` along `relation`, aligned with
    /// `children`: `None` for a NULL reference, or an id no stored row has
    /// (possible on MongoDB, which has no foreign keys). One query for the
    /// distinct ids of the page ([`Repository::get_many`], so it reads
    /// through the cache of a cached entity); none when no child references
    /// anything.
    fn parents_of<'r, K>(
        &'r self,
        children: &'r [K],
        relation: Relation<K, C>,
    ) -> impl Future<Output = Result<Vec<Option<C>>>> + Send + 'r
    where
        K: Entity,
        C::Id: Hash + Eq,
    {
        async move {
            let keys: Vec<Option<&C::Id>> = children.iter().map(|c| relation.key(c)).collect();
            let ids = distinct(keys.iter().flatten().copied());
            let mut found: Vec<C> = Vec::new();
            for chunk in chunks_by_budget(&ids) {
                found.extend(self.get_many(chunk).await?);
            }
            Ok(align_parents(&keys, found))
        }
    }
}

impl<C: Entity + Clone, R: Repository<C>> Relations<C> for R {}

/// A children load under construction; `.await` it for one `Vec` per parent.
#[must_use = "a load does nothing until it is awaited"]
pub struct LoadChildren<'r, C: Entity, P: Entity, R> {
    repo: &'r R,
    parent_ids: Vec<&'r P::Id>,
    relation: Relation<C, P>,
    filter: Filter<C>,
    order: Vec<Order<C>>,
}

impl<'r, C: Entity, P: Entity, R: Repository<C>> LoadChildren<'r, C, P, R> {
    /// Loads only the children matching `filter` too.
    pub fn filter(mut self, filter: Filter<C>) -> Self {
        self.filter = self.filter.and(filter);
        self
    }

    /// Orders each parent's children by `order` (then by id), instead of by id alone.
    pub fn order_by(mut self, order: Order<C>) -> Self {
        self.order.push(order);
        self
    }
}

impl<'r, C, P, R> IntoFuture for LoadChildren<'r, C, P, R>
where
    C: Entity + Clone,
    P: Entity,
    P::Id: Hash + Eq,
    R: Repository<C>,
{
    type Output = Result<Vec<Vec<C>>>;
    type IntoFuture = BoxFuture<'r, Result<Vec<Vec<C>>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let ids = distinct(self.parent_ids.iter().copied());
            let mut children = Vec::new();
            for chunk in chunks_by_budget(&ids) {
                let values = chunk.iter().map(FieldType::to_value).collect();
                let mut query =
                    FindQuery::new(self.relation.filter(values).and(self.filter.clone()));
                query.order = self.order.clone();
                let found = self.repo.fetch(query).await?;
                match children.is_empty() {
                    true => children = found,
                    false => children.extend(found),
                }
            }
            Ok(group_children(&self.parent_ids, children, |c| {
                self.relation.key(c).cloned()
            }))
        })
    }
}

/// The distinct values of `ids`, first occurrence first.
pub fn distinct<'a, I: Hash + Eq + Clone + 'a>(ids: impl Iterator<Item = &'a I>) -> Vec<I> {
    let mut seen = std::collections::HashSet::new();
    ids.filter(|id| seen.insert(*id)).cloned().collect()
}

/// `ids` split into runs whose estimated size stays within [`KEY_BUDGET`];
/// one run for every realistic page.
pub fn chunks_by_budget<I: FieldType>(ids: &[I]) -> Vec<&[I]> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, id) in ids.iter().enumerate() {
        let size = key_size(&id.to_value());
        if i > start && bytes + size > KEY_BUDGET {
            runs.push(&ids[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < ids.len() {
        runs.push(&ids[start..]);
    }
    runs
}

/// An estimate of a key's size on the wire, framing included.
fn key_size(value: &Value) -> usize {
    match value {
        Value::Text(text) => text.len() + 16,
        _ => 32,
    }
}

/// `children` grouped under the parents whose ids are `parents` (in that
/// order, duplicates each getting a copy), each group in `children`' order;
/// `key` reads a child's parent id. Children of no listed parent are dropped.
pub fn group_children<C: Clone, I: Hash + Eq>(
    parents: &[&I],
    children: Vec<C>,
    key: impl Fn(&C) -> Option<I>,
) -> Vec<Vec<C>> {
    let mut slot: HashMap<&I, usize> = HashMap::with_capacity(parents.len());
    for (i, id) in parents.iter().enumerate() {
        slot.entry(*id).or_insert(i);
    }
    let mut groups: Vec<Vec<C>> = parents.iter().map(|_| Vec::new()).collect();
    for child in children {
        let Some(k) = key(&child) else { continue };
        if let Some(&i) = slot.get(&k) {
            groups[i].push(child);
        }
    }
    // A parent listed twice shares its first occurrence's children.
    for (i, id) in parents.iter().enumerate() {
        let first = slot[*id];
        if first != i {
            groups[i] = groups[first].clone();
        }
    }
    groups
}

/// The parent of each key from `found` (matched by id); `None` for a NULL
/// key or an id `found` lacks.
pub fn align_parents<P: Entity + Clone>(keys: &[Option<&P::Id>], found: Vec<P>) -> Vec<Option<P>>
where
    P::Id: Hash + Eq,
{
    let by_id: HashMap<P::Id, P> = found.into_iter().map(|p| (p.id().clone(), p)).collect();
    keys.iter()
        .map(|k| k.and_then(|id| by_id.get(id).cloned()))
        .collect()
}
