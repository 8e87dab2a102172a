// A #[repo(json)] field must be Serialize + DeserializeOwned.
use reposmith::Repository;
use uuid::Uuid;

struct Opaque;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(json)]
    blob: Opaque,
}

fn main() {}
