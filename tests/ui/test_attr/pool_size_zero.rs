// pool_size is at least 1.
#[reposmith_macros::test(pool_size = 0)]
async fn writes(_store: Store) {}

struct Store;

fn main() {}
