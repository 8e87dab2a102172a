// String ids are assigned by the application and i64 ids by the database.
use reposmith::{Entity, IdStrategy, Repository};

#[derive(Repository)]
struct Tenant {
    #[repo(id)]
    slug: String,
}

#[derive(Repository)]
struct Event {
    #[repo(id)]
    id: i64,
    tenant: String,
}

fn main() {
    assert_eq!(Tenant::SCHEMA.id_strategy, IdStrategy::Assigned);
    assert_eq!(Event::SCHEMA.id_strategy, IdStrategy::Identity);
    assert_eq!(Event::SCHEMA.table, "events");
}
