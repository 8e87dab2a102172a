// A PostgreSQL entity cannot reference an entity MongoDB alone stores.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongo")]
struct Trace {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
#[repo(backend = "postgres")]
struct Chunk {
    #[repo(id)]
    id: i64,
    #[repo(references(Trace))]
    trace_id: Uuid,
}

fn main() {}
