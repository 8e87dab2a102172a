// Asking PostgreSQL for a MongoDB-only entity's repository does not compile.
use reposmith::{PgBackend, Repository};
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongo", collection = "llm_traces")]
struct Trace {
    #[repo(id)]
    id: Uuid,
}

fn traces(pg: &PgBackend) {
    let _ = pg.repo::<Trace>();
}

fn main() {}
