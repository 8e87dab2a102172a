// DbEnum stores fieldless enums only.
use reposmith::DbEnum;

#[derive(DbEnum)]
enum Status {
    Draft,
    Published { at: i64 },
}

fn main() {}
