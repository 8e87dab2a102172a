// `id` takes `assigned` and nothing else.
use reposmith::Repository;

#[derive(Repository)]
struct Seat {
    #[repo(id(generated))]
    id: i32,
}

fn main() {}
