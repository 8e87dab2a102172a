// `backend` names one backend: "postgres" or "mongo".
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(backend = "mongodb")]
struct Trace {
    #[repo(id)]
    id: Uuid,
}

fn main() {}
