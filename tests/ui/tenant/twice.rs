// At most one field is #[repo(tenant)]: a row belongs to one tenant.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Passage {
    #[repo(id)]
    id: Uuid,
    #[repo(tenant)]
    org: String,
    #[repo(tenant)]
    team: String,
}

fn main() {}
