// Every attribute mistake is reported at once, each at its own tokens.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(table = "")]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(version)]
    version: String,
    #[repo(unique, index)]
    source_url: String,
}

fn main() {}
