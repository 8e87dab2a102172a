// cache(..) is given once per entity, even across several #[repo] attributes.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(cache(ttl = "5m"))]
#[repo(table = "accounts", cache(ttl = "1m"))]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
}

fn main() {}
