// A MongoDB-only entity carries no PostgreSQL-only attribute: a schema, a SQL default.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongo", schema = "rag")]
struct Trace {
    #[repo(id)]
    id: Uuid,
    #[repo(default = "'gpt'")]
    model: String,
}

fn main() {}
