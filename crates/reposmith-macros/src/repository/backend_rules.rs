//! Rules of `#[repo(backend = "..")]` and `#[repo(collection = "..")]`: the
//! MongoDB collection name, and the attributes that mean something only to
//! PostgreSQL. (darling already keeps `backend` to its three values.)

use darling::Error;
use darling::error::Accumulator;
use proc_macro2::Span;

use super::attr::{RepoInput, VectorAttr};
use super::kinds::{BackendChoice, IndexKind};

/// MongoDB limits a namespace (`<database>.<collection>`) to 255 bytes; this
/// leaves room for the database name.
const MAX_COLLECTION: usize = 200;

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
        let message = match &input.collection {
            Some(_) => "a MongoDB-only entity has no table: remove `table`".to_owned(),
            None => format!(
                "a MongoDB-only entity has no table; the correct format looks like \
                 #[repo(backend = \"mongo\", collection = \"{}\")]",
                table.as_str()
            ),
        };
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
/// reads, which would silently do nothing: a database schema, a read
/// preference (MongoDB's comes from its connection string), SQL defaults,
/// column renames (MongoDB migrations do not rename fields), full text
/// (reposmith drives no MongoDB text index yet), and pgvector index tuning.
pub(super) fn postgres_only_attributes(
    input: &RepoInput,
    backends: BackendChoice,
    errors: &mut Accumulator,
) {
    if backends.postgres() {
        return;
    }
    if let Some(schema) = &input.schema {
        unused_on_mongo(schema.span(), "schema", "a PostgreSQL namespace", errors);
    }
    if let Some(reads) = &input.reads {
        let message = "`reads` routes PostgreSQL reads between the primary and its replicas; \
                       MongoDB reads follow the readPreference in MONGODB_URL, and this entity \
                       is #[repo(backend = \"mongo\")]: remove `reads`";
        errors.push(Error::custom(message).with_span(&reads.span()));
    }
    for field in input.fields() {
        if let Some(default) = &field.default {
            unused_on_mongo(default.span(), "default", "a SQL expression", errors);
        }
        if let Some(old) = &field.renamed_from {
            let what = "a PostgreSQL column rename (MongoDB migrations do not rename fields)";
            unused_on_mongo(old.span(), "renamed_from", what, errors);
        }
        if let Some(full_text) = &field.full_text {
            let what = "PostgreSQL full-text search (reposmith drives no MongoDB text index yet)";
            unused_on_mongo(full_text.span(), "full_text", what, errors);
        }
        if let Some(vector) = &field.vector {
            pgvector_tuning(vector, errors);
        }
    }
}

/// pgvector's index choice and parameters, which MongoDB search indexes
/// (HNSW, sized by the server) do not take.
fn pgvector_tuning(vector: &VectorAttr, errors: &mut Accumulator) {
    let what = "a pgvector index setting (MongoDB search indexes take none)";
    if let Some(index) = vector.index.as_ref().filter(|i| ***i == IndexKind::IvfFlat) {
        unused_on_mongo(index.span(), "index = \"ivfflat\"", what, errors);
    }
    let tuning = [
        ("m", vector.m.as_ref()),
        ("ef_construction", vector.ef_construction.as_ref()),
        ("lists", vector.lists.as_ref()),
    ];
    for (key, value) in tuning {
        if let Some(value) = value {
            unused_on_mongo(value.span(), key, what, errors);
        }
    }
}

fn unused_on_mongo(at: Span, key: &str, what: &str, errors: &mut Accumulator) {
    let message = format!(
        "`{key}` is {what}, which means nothing to MongoDB, and this entity is \
         #[repo(backend = \"mongo\")]; remove it"
    );
    errors.push(Error::custom(message).with_span(&at));
}

/// Rule: when MongoDB stores the entity, no stored field's name is one
/// MongoDB reads as something else: a `.` is a path (an update would write a
/// nested field beside the stored one), a leading `$` an operator, `_id` the
/// document's id (the entity's id is stored there), and `__rs_` prefixes
/// reposmith's own computed fields in queries.
pub(super) fn mongo_field_names(
    input: &RepoInput,
    backends: BackendChoice,
    errors: &mut Accumulator,
) {
    if !backends.mongo() {
        return;
    }
    for field in input.fields().iter().filter(|f| !f.skip.is_present()) {
        let Some(ident) = &field.ident else { continue };
        let (name, span) = match &field.column {
            Some(column) => (column.as_str().to_owned(), column.span()),
            None => (ident.to_string(), ident.span()),
        };
        let problem = if name.contains('.') {
            "contains `.`, which MongoDB reads as a path into a sub-document"
        } else if name.starts_with('$') {
            "starts with `$`, which MongoDB reads as an operator"
        } else if name == "_id" && field.id.is_none() {
            "is where MongoDB keeps the entity's id"
        } else if name.starts_with("__rs_") {
            "starts with `__rs_`, which reposmith reserves for fields it computes"
        } else {
            continue;
        };
        let message = format!(
            "the stored name `{name}` {problem}; give the field another \
             #[repo(column = \"...\")], or pin the entity to PostgreSQL with \
             #[repo(backend = \"postgres\")]"
        );
        errors.push(Error::custom(message).with_span(&span));
    }
}
