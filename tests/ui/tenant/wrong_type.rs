// A #[repo(tenant)] field is a String, a Uuid or an integer.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Passage {
    #[repo(id)]
    id: Uuid,
    #[repo(tenant)]
    org: f64,
}

fn main() {}
