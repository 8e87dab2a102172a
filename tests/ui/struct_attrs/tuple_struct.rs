// Only structs with named fields can derive Repository.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document(Uuid);

fn main() {}
