// The id is Uuid, ObjectId, i64, i32, i16 or String.
use reposmith::Repository;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: f64,
}

fn main() {}
