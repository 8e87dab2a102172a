// Generated index names must fit Postgres' 63-byte identifiers, or conflicts could not name their field.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(table = "retrieval_augmented_generation_documents")]
struct Document {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    canonical_source_url_after_redirects: String,
}

fn main() {}
