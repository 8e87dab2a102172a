// Two fields cannot share a column name.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    title: String,
    #[repo(column = "title")]
    heading: String,
}

fn main() {}
