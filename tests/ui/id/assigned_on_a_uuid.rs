// `id(assigned)` applies to integer ids: a Uuid id is already kept when given.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id(assigned))]
    id: Uuid,
}

fn main() {}
