// Loading takes a relation constant: a plain column (not declared references) does not compile.
use reposmith::{Relations, Repository};
use uuid::Uuid;

#[derive(Debug, Clone, Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
}

#[derive(Debug, Clone, Repository)]
struct Chunk {
    #[repo(id)]
    id: i64,
    document_id: Uuid,
}

async fn load(chunks: &impl Repository<Chunk>, docs: &[Document]) {
    let _ = chunks.load_for(docs, Chunk::DOCUMENT_ID).await;
}

fn main() {}
