// A zero negative_ttl is refused: leaving it out is how absent rows go uncached.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(cache(ttl = "5m", negative_ttl = "0s"))]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
}

fn main() {}
