//! Loading along relations, written once against `Repository` and run on
//! each backend: one query per relation (counted from the `reposmith.query`
//! spans every statement or driver command runs in), alignment with the
//! page, order, empty groups, NULL references.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reposmith::{Filter, Relations, Repository};
use tracing_subscriber::layer::SubscriberExt;

use super::entities::{RelChunk, RelDoc, RelNode};

/// Counts `reposmith.query` spans opened while it is the default subscriber.
#[derive(Clone, Default)]
pub(crate) struct QueryCount(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for QueryCount {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "reposmith.query" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl QueryCount {
    /// The queries `work` sends (it runs on this thread: the tests use the
    /// current-thread runtime).
    pub(crate) async fn of<T>(work: impl IntoFuture<Output = T>) -> (T, usize) {
        let count = QueryCount::default();
        let subscriber = tracing_subscriber::registry().with(count.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        let out = work.await;
        (out, count.0.load(Ordering::SeqCst))
    }
}

/// 500 documents, every third without chunks, the others with 1 to 4
/// chunks inserted in a shuffled order; returns the documents in a page
/// order unlike insertion (reversed).
pub(crate) async fn seed(
    docs: &impl Repository<RelDoc>,
    chunks: &impl Repository<RelChunk>,
) -> Vec<RelDoc> {
    let parents: Vec<RelDoc> = (0..500).map(|i| RelDoc::new(&format!("d{i}"))).collect();
    docs.insert_many(&parents).await.unwrap();
    let mut children = Vec::new();
    for (i, doc) in parents.iter().enumerate() {
        if i.is_multiple_of(3) {
            continue;
        }
        for seq in 0..(i % 4 + 1) as i32 {
            children.push(RelChunk::of(doc, seq));
        }
    }
    // Interleave so id order (v7, insertion time) is not the seq order.
    children.reverse();
    for chunk in children.chunks(400) {
        chunks.insert_many(chunk).await.unwrap();
    }
    parents.into_iter().rev().collect()
}

/// A page of 500 documents gets its chunks in exactly one query, aligned
/// with the page, in id order; documents without chunks get empty vectors;
/// and the parents of all the chunks come back in one more.
pub(crate) async fn one_query_per_relation(
    docs: &impl Repository<RelDoc>,
    chunks: &impl Repository<RelChunk>,
) {
    let page = seed(docs, chunks).await;
    let (per_doc, queries) = QueryCount::of(chunks.load_for(&page, RelChunk::DOC)).await;
    let per_doc = per_doc.unwrap();
    assert_eq!(queries, 1, "loading the children of 500 parents");
    assert_eq!(per_doc.len(), page.len());
    for (doc, children) in page.iter().zip(&per_doc) {
        let i: usize = doc.title[1..].parse().unwrap();
        let expected = if i.is_multiple_of(3) { 0 } else { i % 4 + 1 };
        assert_eq!(children.len(), expected, "children of {}", doc.title);
        assert!(children.iter().all(|c| c.doc_id == doc.id));
        let ids: Vec<_> = children.iter().map(|c| c.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "children in id order");
    }
    let all: Vec<RelChunk> = per_doc.into_iter().flatten().collect();
    let (parents, queries) = QueryCount::of(docs.parents_of(&all, RelChunk::DOC)).await;
    let parents = parents.unwrap();
    assert_eq!(queries, 1, "loading the parents of {} children", all.len());
    assert_eq!(parents.len(), all.len());
    for (chunk, parent) in all.iter().zip(&parents) {
        assert_eq!(parent.as_ref().map(|p| p.id), Some(chunk.doc_id));
    }
}

/// `order_by` orders each parent's children, `filter` narrows them, a
/// parent listed twice gets its children twice, and an empty page sends
/// nothing.
pub(crate) async fn order_filter_duplicates_and_empty_pages(
    docs: &impl Repository<RelDoc>,
    chunks: &impl Repository<RelChunk>,
) {
    let page = seed(docs, chunks).await;
    let page: Vec<RelDoc> = page.into_iter().take(40).collect();
    let by_seq = chunks
        .load_for(&page, RelChunk::DOC)
        .order_by(RelChunk::SEQ.desc())
        .await
        .unwrap();
    for children in &by_seq {
        let seqs: Vec<i32> = children.iter().map(|c| c.seq).collect();
        let mut want = seqs.clone();
        want.sort_by(|a, b| b.cmp(a));
        assert_eq!(seqs, want);
    }
    let first_only = chunks
        .load_for(&page, RelChunk::DOC)
        .filter(RelChunk::SEQ.eq(0))
        .await
        .unwrap();
    for (all, first) in by_seq.iter().zip(&first_only) {
        assert_eq!(first.len(), usize::from(!all.is_empty()));
    }
    let twice = vec![page[1].clone(), page[2].clone(), page[1].clone()];
    let groups = chunks.load_for(&twice, RelChunk::DOC).await.unwrap();
    assert_eq!(groups[0], groups[2]);
    assert_eq!(groups[0].len(), by_seq[1].len());
    let none: &[RelDoc] = &[];
    let (empty, queries) = QueryCount::of(chunks.load_for(none, RelChunk::DOC)).await;
    assert_eq!((empty.unwrap().len(), queries), (0, 0));
}

/// A self-referencing tree: the children of nodes and the parent of each
/// node (the root's is `None`, a NULL reference) in one query each.
pub(crate) async fn tree(nodes: &impl Repository<RelNode>) {
    let root = nodes
        .insert(&RelNode {
            id: 0,
            parent_id: None,
            name: "root".into(),
        })
        .await
        .unwrap();
    let mut level = Vec::new();
    for i in 0..3 {
        let child = RelNode {
            id: 0,
            parent_id: Some(root.id),
            name: format!("c{i}"),
        };
        level.push(nodes.insert(&child).await.unwrap());
    }
    let all = nodes.find(Filter::all()).await.unwrap();
    let (kids, queries) = QueryCount::of(nodes.load_for(&all, RelNode::PARENT)).await;
    assert_eq!(queries, 1);
    let kids = kids.unwrap();
    assert_eq!(kids[0], level);
    assert!(kids[1..].iter().all(Vec::is_empty));
    let parents = nodes.parents_of(&all, RelNode::PARENT).await.unwrap();
    assert_eq!(parents[0], None);
    assert!(parents[1..].iter().all(|p| p.as_ref() == Some(&root)));
}
