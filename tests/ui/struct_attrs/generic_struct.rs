// Generic structs cannot derive Repository: a table has one fixed set of column types.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document<T> {
    #[repo(id)]
    id: Uuid,
    body: T,
}

fn main() {}
