// Unknown keys inside cache(..) are rejected, with the closest known key suggested.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(cache(ttl = "5m", negativ_ttl = "30s"))]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
}

fn main() {}
