// The cache ttl is at most 30 days: it bounds how long a lost invalidation is served.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(cache(ttl = "5w"))]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
}

fn main() {}
