// A table name longer than 63 bytes would be truncated by Postgres, so it is rejected.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(table = "documents_with_an_extraordinarily_long_name_that_postgres_would_truncate")]
struct Document {
    #[repo(id)]
    id: Uuid,
}

fn main() {}
