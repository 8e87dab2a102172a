// `set_null` exists only on `Option` fields.
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    title: String,
    summary: Option<String>,
}

fn main() {
    let _fine = Document::SUMMARY.set_null();
    let _refused = Document::TITLE.set_null();
}
