// A `soft_delete` field holds the deletion time, not any optional value.
use reposmith::Repository;

#[derive(Repository)]
struct Note {
    #[repo(id)]
    id: i64,
    #[repo(soft_delete)]
    deleted: Option<bool>,
}

fn main() {}
