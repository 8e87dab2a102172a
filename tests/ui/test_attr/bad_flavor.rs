// flavor is "current_thread" or "multi_thread".
#[reposmith_macros::test(flavor = "threaded")]
async fn writes(_store: Store) {}

struct Store;

fn main() {}
