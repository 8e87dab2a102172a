// An entity pinned to one backend gets that backend's repository; one
// without `backend` gets both, on a collection of its own name if asked.
use reposmith::{Backend, Backends, Entity, MongoBackend, PgBackend, Repository};
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongo", collection = "llm_traces")]
struct Trace {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
#[repo(backend = "postgres", table = "documents", schema = "rag")]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(default = "'untitled'")]
    title: String,
}

#[derive(Repository)]
#[repo(table = "chats", collection = "chat_history")]
struct Chat {
    #[repo(id)]
    id: Uuid,
}

#[allow(dead_code)]
fn repos(pg: &PgBackend, mongo: &MongoBackend) {
    let _ = mongo.repo::<Trace>();
    let _ = pg.repo::<Document>();
    let _ = pg.repo::<Chat>();
    let _ = mongo.repo::<Chat>();
}

fn main() {
    assert_eq!(Trace::SCHEMA.backends, Backends::Mongo);
    assert_eq!(Trace::SCHEMA.collection, "llm_traces");
    assert!(!Trace::SCHEMA.backends.includes(Backend::Postgres));
    assert_eq!(Document::SCHEMA.backends, Backends::Postgres);
    assert_eq!(Document::SCHEMA.collection, "documents");
    assert_eq!(Chat::SCHEMA.backends, Backends::Both);
    assert_eq!(
        (Chat::SCHEMA.table, Chat::SCHEMA.collection),
        ("chats", "chat_history")
    );
}
