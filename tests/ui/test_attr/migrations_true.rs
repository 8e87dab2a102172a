// migrations takes a directory or false; true is the default and is refused as meaningless.
#[reposmith_macros::test(migrations = true)]
async fn writes(_store: Store) {}

struct Store;

fn main() {}
