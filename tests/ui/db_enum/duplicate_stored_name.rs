// Two variants cannot be stored under the same name.
use reposmith::DbEnum;

#[derive(DbEnum)]
enum Status {
    Draft,
    #[repo(rename = "draft")]
    Unpublished,
}

fn main() {}
