//! Rules of `#[repo(backend = "..")]` and `#[repo(collection = "..")]`: which
//! backends store an entity, its MongoDB collection name, and the attributes
//! that mean something only to PostgreSQL.

use darling::Error;
use darling::error::Accumulator;
use darling::util::SpannedValue;

use super::attr::RepoInput;
use super::model::BackendChoice;

/// MongoDB limits a namespace (`<database>.<collection>`) to 255 bytes; this
/// leaves room for the database name.
const MAX_COLLECTION: usize = 200;

/// Rule: `backend` names one backend; without it both store the entity.
pub(super) fn backends(input: &RepoInput, errors: &mut Accumulator) -> BackendChoice {
    let Some(backend) = &input.backend else {
        return BackendChoice::Both;
    };
    match backend.as_str() {
        "postgres" => BackendChoice::Postgres,
        "mongo" => BackendChoice::Mongo,
        "both" => BackendChoice::Both,
        other => {
            let message = format!(
                "unknown backend \"{other}\"; the correct format looks like \
                 #[repo(backend = \"mongo\")] or #[repo(backend = \"postgres\")] \
                 (leave it out for both)"
            );
            errors.push(Error::custom(message).with_span(&backend.span()));
            BackendChoice::Both
        }
    }
}

/// Rule: `collection` is a valid MongoDB collection name, given only when
/// MongoDB stores the entity. A MongoDB-only entity names its collection
/// with `collection`, not `table`, so the code says what it is.
pub(super) fn collection(
    input: &RepoInput,
    backends: BackendChoice,
    errors: &mut Accumulator,
) -> Option<String> {
    if backends == BackendChoice::Mongo
        && let Some(table) = &input.table
    {
        let message = format!(
            "a MongoDB-only entity has no table; the correct format looks like \
             #[repo(backend = \"mongo\", collection = \"{}\")]",
            table.as_str()
        );
        errors.push(Error::custom(message).with_span(&table.span()));
    }
    let collection = input.collection.as_ref()?;
    if !backends.mongo() {
        let message = "`collection` names a MongoDB collection, but this entity is \
                       #[repo(backend = \"postgres\")]; use #[repo(table = \"..\")]";
        errors.push(Error::custom(message).with_span(&collection.span()));
    }
    if let Some(problem) = collection_problem(collection.as_str()) {
        let message = format!(
            "the collection name {problem}; the correct format looks like \
             #[repo(collection = \"llm_traces\")]"
        );
        errors.push(Error::custom(message).with_span(&collection.span()));
    }
    Some(collection.as_str().to_owned())
}

/// Why MongoDB would refuse `name` as a collection name, if it would.
fn collection_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("is empty".to_owned())
    } else if name.chars().any(char::is_control) {
        Some("contains a control character (NUL, newline, ...)".to_owned())
    } else if name.contains('$') {
        Some("contains `$`, which MongoDB reserves".to_owned())
    } else if name.starts_with("system.") {
        Some("starts with `system.`, which MongoDB reserves".to_owned())
    } else if name.len() > MAX_COLLECTION {
        Some(format!(
            "is {} bytes long; at most {MAX_COLLECTION} leave room for the database \
             name in MongoDB's 255-byte namespace",
            name.len()
        ))
    } else {
        None
    }
}

/// Rule: a MongoDB-only entity carries no attribute that only PostgreSQL
/// reads (a database schema, SQL defaults), which would silently do nothing.
pub(super) fn postgres_only_attributes(
    input: &RepoInput,
    backends: BackendChoice,
    errors: &mut Accumulator,
) {
    if backends.postgres() {
        return;
    }
    if let Some(schema) = &input.schema {
        unused_on_mongo(schema, "schema", "a PostgreSQL namespace", errors);
    }
    for default in input.fields().iter().filter_map(|f| f.default.as_ref()) {
        unused_on_mongo(default, "default", "a SQL expression", errors);
    }
}

fn unused_on_mongo(at: &SpannedValue<String>, key: &str, what: &str, errors: &mut Accumulator) {
    let message = format!(
        "`{key}` is {what}, which means nothing to MongoDB, and this entity is \
         #[repo(backend = \"mongo\")]; remove it"
    );
    errors.push(Error::custom(message).with_span(&at.span()));
}
