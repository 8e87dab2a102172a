// An entity pinned to one backend does not meet the other backend's bound,
// which every repository constructor carries, and the error says what to do.
use reposmith::{MongoEntity, PostgresEntity, Repository};
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "postgres", table = "documents")]
struct Document {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
#[repo(backend = "mongo", collection = "llm_traces")]
struct Trace {
    #[repo(id)]
    id: Uuid,
}

fn mongo_only<E: MongoEntity>() {}

fn postgres_only<E: PostgresEntity>() {}

fn main() {
    mongo_only::<Document>();
    postgres_only::<Trace>();
}
