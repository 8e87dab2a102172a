// A #[repo(tenant)] field is a plain column compared with `=`, never JSON.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Passage {
    #[repo(id)]
    id: Uuid,
    #[repo(tenant, json)]
    org: String,
}

fn main() {}
