// A MongoDB-only entity carries no PostgreSQL-only attribute: a schema, a SQL
// default, a column rename, full text, pgvector index tuning.
use reposmith::{Repository, Vector};
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongo", schema = "rag")]
struct Trace {
    #[repo(id)]
    id: Uuid,
    #[repo(default = "'gpt'")]
    model: String,
    #[repo(renamed_from = "prompt_text")]
    prompt: String,
    #[repo(full_text)]
    answer: String,
    #[repo(vector(dims = 3, index = "ivfflat", lists = 10))]
    embedding: Vector,
    #[repo(vector(dims = 3, m = 24))]
    other: Vector,
}

fn main() {}
