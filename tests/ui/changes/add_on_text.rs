// `add` needs a numeric column: on a text column it is a compile error.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    title: String,
    views: i64,
}

fn main() {
    let _fine = Document::VIEWS.add(1);
    let _refused = Document::TITLE.add("x");
}
