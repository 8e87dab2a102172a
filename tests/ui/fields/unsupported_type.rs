// A field type without FieldType is rejected at the field, with the supported types and the json escape hatch named.
use reposmith::Repository;
use uuid::Uuid;

use std::collections::HashMap;

#[derive(Repository)]
struct Document {
    #[repo(id)]
    id: Uuid,
    headers: HashMap<String, String>,
}

fn main() {}
