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

/// Postgres' 63-byte identifier limit does not apply to a MongoDB-only
/// entity: its index names would be too long for Postgres.
#[derive(Repository)]
#[repo(backend = "mongo", collection = "spans")]
struct ConversationTraceSpanAttribute {
    #[repo(id)]
    id: Uuid,
    #[repo(index)]
    parent_span_identifier_hash_of_the_conversation: String,
}

/// A PostgreSQL-only entity may use names MongoDB would misread.
#[derive(Repository)]
#[repo(backend = "postgres")]
struct Metric {
    #[repo(id)]
    id: Uuid,
    #[repo(column = "usage.tokens")]
    tokens: i64,
}

#[allow(dead_code)]
fn repos(pg: &PgBackend, mongo: &MongoBackend) {
    let _ = mongo.repo::<Trace>();
    let _ = pg.repo::<Document>();
    let _ = pg.repo::<Chat>();
    let _ = mongo.repo::<Chat>();
    let _ = mongo.repo::<ConversationTraceSpanAttribute>();
    let _ = pg.repo::<Metric>();
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
