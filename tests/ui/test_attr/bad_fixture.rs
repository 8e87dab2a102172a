// A fixture is a .sql (PostgreSQL) or .json (MongoDB) file given as a string.
#[reposmith_macros::test(fixtures("users.csv", users))]
async fn writes(_store: Store) {}

struct Store;

fn main() {}
