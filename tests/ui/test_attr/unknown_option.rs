// An unknown option of #[reposmith::test] is an error naming it, with the closest known option.
#[reposmith_macros::test(pool = 3)]
async fn writes(_store: Store) {}

struct Store;

fn main() {}
