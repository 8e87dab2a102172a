// A zero ttl would cache nothing: refused rather than silently ignored.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(cache(ttl = "0m"))]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
}

fn main() {}
