// The id is not the tenant: a field is either `id` or `tenant`.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Passage {
    #[repo(id, tenant)]
    id: Uuid,
}

fn main() {}
