// Every pgvector type, index kind, full text and embed compile, and the
// generated search methods exist with the documented signatures.
use reposmith::search::{ByVector, Hybrid};
use reposmith::{Bit, HalfVector, PgRepository, Repository, Search, SparseVector, Vector, VectorSearch};
use uuid::Uuid;

#[derive(Repository)]
#[repo(table = "documents")]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(full_text)]
    title: String,
    #[repo(full_text(language = "simple"))]
    body: Option<String>,
    #[repo(vector(dims = 384, distance = "cosine", index = "hnsw", m = 24, ef_construction = 100), embed(from = "title"))]
    embedding: Vector,
    #[repo(vector(dims = 4000, distance = "inner_product"))]
    wide: Option<HalfVector>,
    #[repo(vector(dims = 100000, distance = "l1"))]
    sparse: SparseVector,
    #[repo(vector(dims = 1024, distance = "hamming", index = "ivfflat", lists = 50))]
    bits: Bit,
    #[repo(vector(dims = 3000, index = "none"), renamed_from = "old_vector")]
    exact: Vector,
    #[repo(ttl = "30d")]
    seen_at: chrono::DateTime<chrono::Utc>,
}

fn searches(repo: &PgRepository<Document>) {
    let _: Search<'_, Document, _, ByVector> = repo.search_embedding(vec![0.0; 384], 10).ef_search(80);
    let _: Search<'_, Document, _, ByVector> = repo.search_embedding_by_text("query", 10);
    let _: Search<'_, Document, _, Hybrid> =
        repo.search_hybrid_embedding("query", vec![0.0; 384], 10).weights(1.0, 2.0);
    let _ = repo.search_bits(Bit::new(&[true; 1024]), 5).probes(4);
    let _ = repo.search_text("rust", 5).page_after(None);
}

fn main() {
    let _ = searches;
}
