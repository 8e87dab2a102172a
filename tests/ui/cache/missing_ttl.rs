// cache(..) needs a ttl; negative_ttl alone is not enough.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(cache(negative_ttl = "30s"))]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
}

fn main() {}
