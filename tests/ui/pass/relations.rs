// References compile between entities in any order, to themselves, and with
// an Option field for set_null; each gets a typed relation constant.
use reposmith::{Relation, Repository};
use uuid::Uuid;

#[derive(Debug, Clone, Repository)]
#[repo(table = "ui_chunks")]
pub struct Chunk {
    #[repo(id)]
    pub id: i64,
    #[repo(references(Document, on_delete = "cascade"))]
    pub document_id: Uuid,
    #[repo(references(Self, on_delete = "set_null"))]
    pub parent: Option<i64>,
}

#[derive(Debug, Clone, Repository)]
#[repo(table = "ui_documents")]
pub struct Document {
    #[repo(id)]
    pub id: Uuid,
    // Documents and chunks reference each other.
    #[repo(references(Chunk, on_delete = "set_null"))]
    pub cover_chunk_id: Option<i64>,
}

fn main() {
    let relation: Relation<Chunk, Document> = Chunk::DOCUMENT;
    assert_eq!(relation.describe(), "Chunk.document_id -> Document");
    let tree: Relation<Chunk, Chunk> = Chunk::PARENT_REL;
    let chunk = Chunk {
        id: 1,
        document_id: Uuid::nil(),
        parent: None,
    };
    assert_eq!(tree.key(&chunk), None);
    assert_eq!(relation.key(&chunk), Some(&Uuid::nil()));
    let cover = Document::COVER_CHUNK.reference().unwrap();
    assert_eq!(cover.target().table, "ui_chunks");
    assert_eq!(cover.on_delete, reposmith::OnDelete::SetNull);
}
