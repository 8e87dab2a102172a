// A collection name MongoDB would refuse is a compile error: `$`, `system.`.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongo", collection = "traces$v2")]
struct Trace {
    #[repo(id)]
    id: Uuid,
}

#[derive(Repository)]
#[repo(collection = "system.traces")]
struct Span {
    #[repo(id)]
    id: Uuid,
}

fn main() {}
