// A #[repo(tenant)] field is never an Option: every row has an owner.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Passage {
    #[repo(id)]
    id: Uuid,
    #[repo(tenant)]
    org: Option<String>,
}

fn main() {}
