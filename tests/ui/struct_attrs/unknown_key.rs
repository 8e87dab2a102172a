// Unknown keys in #[repo(...)] are rejected, with the closest known key suggested.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(tabel = "documents")]
struct Document {
    #[repo(id)]
    id: Uuid,
}

fn main() {}
