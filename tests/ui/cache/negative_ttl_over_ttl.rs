// An absent row must not stay cached longer than a found one.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(cache(ttl = "5m", negative_ttl = "1h"))]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
}

fn main() {}
