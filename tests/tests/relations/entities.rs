//! The relation tests' entities: documents with chunks (cascade), notes
//! (restrict, the default) and tags (set null), and a self-referencing tree.

use reposmith::Repository;
use uuid::Uuid;

/// A parent.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "rel_docs")]
pub(crate) struct RelDoc {
    #[repo(id)]
    pub(crate) id: Uuid,
    pub(crate) title: String,
}

/// A child deleted with its document.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "rel_chunks")]
pub(crate) struct RelChunk {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(references(RelDoc, on_delete = "cascade"))]
    pub(crate) doc_id: Uuid,
    pub(crate) seq: i32,
}

/// A child that keeps its document from being deleted.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "rel_notes")]
pub(crate) struct RelNote {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(references(RelDoc))]
    pub(crate) doc_id: Uuid,
}

/// A child that outlives its document, its reference set to NULL.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "rel_tags")]
pub(crate) struct RelTag {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(references(RelDoc, on_delete = "set_null"))]
    pub(crate) doc_id: Option<Uuid>,
    pub(crate) label: String,
}

/// A tree: each node references its parent node.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "rel_nodes")]
pub(crate) struct RelNode {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(references(Self, on_delete = "cascade"))]
    pub(crate) parent_id: Option<i64>,
    pub(crate) name: String,
}

impl RelDoc {
    pub(crate) fn new(title: &str) -> Self {
        RelDoc {
            id: Uuid::now_v7(),
            title: title.to_owned(),
        }
    }
}

impl RelChunk {
    pub(crate) fn of(doc: &RelDoc, seq: i32) -> Self {
        RelChunk {
            id: Uuid::now_v7(),
            doc_id: doc.id,
            seq,
        }
    }
}

/// Every schema, in an order that puts children first: the DDL must not care.
pub(crate) fn schemas() -> [&'static reposmith::EntitySchema; 5] {
    use reposmith::Entity;
    [
        RelNode::SCHEMA,
        RelChunk::SCHEMA,
        RelNote::SCHEMA,
        RelTag::SCHEMA,
        RelDoc::SCHEMA,
    ]
}
