// The test function is async and takes exactly one argument; every mistake is reported at once.
#[reposmith_macros::test(pool_size = 0)]
fn writes(_a: u32, _b: u32) {}

fn main() {}
