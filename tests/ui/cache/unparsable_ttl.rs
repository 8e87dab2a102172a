// A cache lifetime is a whole number with a unit (s, m, h, d, w), pointed at where wrong.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(cache(ttl = "5 min", negative_ttl = "1.5s"))]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
}

fn main() {}
