// backends(..) names postgres, mongo or redis, each at most once.
#[reposmith_macros::test(backends(postgres, mysql, postgres))]
async fn writes(_store: Store) {}

struct Store;

fn main() {}
