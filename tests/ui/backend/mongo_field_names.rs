// When MongoDB stores an entity, no stored name is a path (`.`), an operator
// (`$`), the document id (`_id`) or reposmith's own (`__rs_`).
use reposmith::Repository;
use uuid::Uuid;

#[derive(Repository)]
#[repo(collection = "traces")]
struct Trace {
    #[repo(id)]
    id: Uuid,
    #[repo(column = "usage.tokens")]
    tokens: i64,
    #[repo(column = "$cost")]
    cost: f64,
    _id: String,
    __rs_score: f64,
}

fn main() {}
