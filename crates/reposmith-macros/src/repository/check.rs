//! Stage 2: the rules attributes must obey together. One function per rule,
//! each stating it; every violation is collected so a user with three
//! mistakes sees three errors, each on the offending tokens with the
//! correct syntax as help.

use darling::Error;
use darling::error::Accumulator;
use darling::util::{Override, SpannedValue};
use proc_macro2::Span;
use syn::spanned::Spanned;

use super::attr::{Flag, RepoField, RepoInput};
use super::kinds::{BackendChoice, Reads};
use super::model::{Entity, Field, IdKind, Role, Storage, VectorIndexModel};
use super::types::{is_one_of, last_segment, option_inner};
use super::{backend_rules, cache_rules, relation_rules, search_rules};
use crate::naming;

/// Postgres truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
const MAX_IDENTIFIER: usize = 63;

/// Checks every rule and builds the model, or returns every violation.
/// `shape` is the struct's shape hash (see `shape`), kept when it is cached.
pub(crate) fn check(input: &RepoInput, shape: u64) -> Result<Entity, Error> {
    let mut errors = Error::accumulator();
    no_generics(input, &mut errors);
    let table = input.table.as_ref().map_or_else(
        || naming::table_name(&input.ident.to_string()),
        |t| t.as_str().to_owned(),
    );
    if let Some(table) = &input.table {
        valid_name(
            table,
            "table",
            "#[repo(table = \"documents\")]",
            &mut errors,
        );
    }
    if let Some(schema) = &input.schema {
        valid_name(schema, "schema", "#[repo(schema = \"rag\")]", &mut errors);
    }
    let mut fields: Vec<Field> = input
        .fields()
        .iter()
        .map(|f| field(f, &input.ident, &mut errors))
        .collect();
    search_rules::embed_sources(input.fields(), &mut fields, &mut errors);
    search_rules::full_text_column_free(&fields, &mut errors);
    let id_kind = exactly_one_id(input, &fields, &mut errors);
    at_most_one(&fields, Role::Version, "version", &mut errors);
    at_most_one(&fields, Role::CreatedAt, "created_at", &mut errors);
    at_most_one(&fields, Role::UpdatedAt, "updated_at", &mut errors);
    soft_delete_rules(input.fields(), &mut errors);
    tenant_rules(input.fields(), &mut errors);
    for extra in fields.iter().filter(|f| f.ttl_seconds.is_some()).skip(1) {
        let message = "only one field can carry #[repo(ttl = \"..\")]: rows expire by one clock";
        errors.push(Error::custom(message).with_span(&extra.ident));
    }
    distinct_columns(&fields, &mut errors);
    relation_rules::distinct_constants(&fields, &mut errors);
    let backends = input.backend.as_ref().map_or(BackendChoice::Both, |b| **b);
    if backends.postgres() {
        // Postgres' identifier limit means nothing to a MongoDB-only entity.
        generated_names_fit(input, &table, &fields, &mut errors);
    }
    let collection = backend_rules::collection(input, backends, &mut errors);
    let cache = cache_rules::cache(input, shape, &mut errors);
    backend_rules::postgres_only_attributes(input, backends, &mut errors);
    backend_rules::mongo_field_names(input, backends, &mut errors);
    if !backends.postgres() {
        relation_rules::no_action_on_mongo(input, &mut errors);
    }
    relation_rules::cached_references_restrict(input, &mut errors);
    // A MongoDB-only entity has no table: the schema's name, from which
    // index names derive, is its collection's.
    let table = match (&collection, backends) {
        (Some(collection), BackendChoice::Mongo) => collection.clone(),
        _ => table,
    };
    errors.finish()?;
    Ok(Entity {
        ident: input.ident.clone(),
        vis: input.vis.clone(),
        table,
        schema: input.schema.as_ref().map(|s| s.as_str().to_owned()),
        collection,
        backends,
        fields,
        id_kind: id_kind.expect("an id was found when no error was reported"),
        cache,
        reads: input.reads.as_ref().map_or(Reads::Replica, |r| **r),
    })
}

/// Rule: entities are concrete types; a generic struct has no single schema.
fn no_generics(input: &RepoInput, errors: &mut Accumulator) {
    if !input.generics.params.is_empty() {
        let message = "#[derive(Repository)] does not support generic structs: \
                       a table has one fixed set of column types";
        errors.push(Error::custom(message).with_span(&input.generics));
    }
}

/// Rule: table, schema and column names are non-empty, free of NUL, and fit
/// Postgres' 63-byte identifiers (longer ones would be silently truncated).
fn valid_name(name: &SpannedValue<String>, what: &str, example: &str, errors: &mut Accumulator) {
    let problem = match name.as_str() {
        "" => Some("is empty".to_owned()),
        n if n.chars().any(char::is_control) => {
            Some("contains a control character (NUL, newline, ...)".to_owned())
        }
        n if n.len() > MAX_IDENTIFIER => Some(format!(
            "is {} bytes long; Postgres identifiers hold at most {MAX_IDENTIFIER}",
            n.len()
        )),
        _ => None,
    };
    if let Some(problem) = problem {
        let message = format!("the {what} name {problem}; the correct format looks like {example}");
        errors.push(Error::custom(message).with_span(&name.span()));
    }
}

/// Checks one field's own attributes and builds its model. The model is
/// built even when a rule fails, so later rules (such as "exactly one id")
/// do not report a second error for the same mistake.
fn field(f: &RepoField, entity: &syn::Ident, errors: &mut Accumulator) -> Field {
    let ident = f.ident.clone().expect("darling accepts only named fields");
    let role = errors.handle(one_role(f)).unwrap_or(Role::Data);
    skip_stands_alone(f, errors);
    role_type(f, role, errors);
    assigned_is_an_integer(f, errors);
    json_is_plain_data(f, role, errors);
    index_flags(f, role, errors);
    if let Some(column) = &f.column {
        valid_name(column, "column", "#[repo(column = \"source_url\")]", errors);
    }
    if let Some(old) = &f.renamed_from {
        valid_name(
            old,
            "previous column",
            "#[repo(renamed_from = \"url\")]",
            errors,
        );
    }
    let ttl_seconds = ttl(f, errors);
    let vector = search_rules::vector(f, role, errors);
    let full_text = search_rules::full_text(f, errors);
    let references = relation_rules::reference(f, role, entity, errors);
    if let Some(default) = f.default.as_ref().filter(|d| d.trim().is_empty()) {
        let message = "the default is empty; the correct format looks like \
                       #[repo(default = \"now()\")] with a SQL expression";
        errors.push(Error::custom(message).with_span(&default.span()));
    }
    let storage = match (f.skip.is_present(), f.json.is_present()) {
        (true, _) => Storage::Skipped,
        (false, true) => Storage::Json,
        (false, false) => Storage::Typed,
    };
    let column = f
        .column
        .as_ref()
        .map_or_else(|| ident.to_string(), |c| c.as_str().to_owned());
    Field {
        column,
        ident,
        ty: f.ty.clone(),
        role,
        storage,
        unique: f.unique.is_present(),
        index: f.index.is_present(),
        default_sql: f.default.as_ref().map(|d| d.as_str().to_owned()),
        vector,
        full_text,
        embed_from: None,
        renamed_from: f.renamed_from.as_ref().map(|r| r.as_str().to_owned()),
        ttl_seconds,
        references,
        span: f.ty.span(),
    }
}

/// Rule: `ttl` is on a `DateTime<Utc>` field and reads like `90s`, `15m`, `12h`, `30d` or `2w`.
fn ttl(f: &RepoField, errors: &mut Accumulator) -> Option<u64> {
    let ttl = f.ttl.as_ref()?;
    let inner = option_inner(&f.ty).unwrap_or(&f.ty);
    if f.json.is_present() || f.skip.is_present() || !is_one_of(inner, &["DateTime"]) {
        let message =
            "`ttl` applies to a stored `DateTime<Utc>` field: rows expire that long after it";
        errors.push(Error::custom(message).with_span(&ttl.span()));
        return None;
    }
    let parsed = parse_ttl(ttl.as_str());
    if parsed.is_none() {
        let message = format!(
            "\"{}\" is not a lifetime: use a whole number with s, m, h, d or w, such as \"30d\"",
            ttl.as_str()
        );
        errors.push(Error::custom(message).with_span(&ttl.span()));
    }
    parsed
}

/// `30d` → 2,592,000 seconds; `None` for anything else, zero included.
fn parse_ttl(text: &str) -> Option<u64> {
    parse_duration(text).filter(|s| *s > 0)
}

/// A whole number of seconds (`s`), minutes (`m`), hours (`h`), days (`d`)
/// or weeks (`w`) in seconds: `30d` → 2,592,000, `0s` → 0; `None` for
/// anything else (a sign, a fraction, a space, an overflow). Shared by a
/// field's `ttl` and `cache(..)`.
pub(super) fn parse_duration(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    number.checked_mul(unit)
}

/// Rule: a field has at most one of `id`, `version`, `created_at`,
/// `updated_at`, `soft_delete`, `tenant`.
fn one_role(f: &RepoField) -> Result<Role, Error> {
    let flag = |flag: &Flag| flag.is_present().then(|| flag.span());
    let roles: Vec<(Role, Span, &str)> = [
        (Role::Id, f.id.as_ref().map(|id| id.span()), "id"),
        (Role::Version, flag(&f.version), "version"),
        (Role::CreatedAt, flag(&f.created_at), "created_at"),
        (Role::UpdatedAt, flag(&f.updated_at), "updated_at"),
        (Role::SoftDelete, flag(&f.soft_delete), "soft_delete"),
        (Role::Tenant, flag(&f.tenant), "tenant"),
    ]
    .into_iter()
    .filter_map(|(role, span, name)| Some((role, span?, name)))
    .collect();
    match roles.as_slice() {
        [] => Ok(Role::Data),
        [(role, _, _)] => Ok(*role),
        [(_, _, first), (_, span, second), ..] => Err(Error::custom(format!(
            "a field is either `{first}` or `{second}`, not both: keep one"
        ))
        .with_span(span)),
    }
}

/// Rule: a skipped field is not stored, so no other storage option applies to it.
fn skip_stands_alone(f: &RepoField, errors: &mut Accumulator) {
    if !f.skip.is_present() {
        return;
    }
    let others = [
        (f.id.is_some(), "id"),
        (f.column.is_some(), "column"),
        (f.unique.is_present(), "unique"),
        (f.index.is_present(), "index"),
        (f.json.is_present(), "json"),
        (f.version.is_present(), "version"),
        (f.created_at.is_present(), "created_at"),
        (f.updated_at.is_present(), "updated_at"),
        (f.soft_delete.is_present(), "soft_delete"),
        (f.tenant.is_present(), "tenant"),
        (f.default.is_some(), "default"),
    ];
    for (_, name) in others.iter().filter(|(present, _)| *present) {
        let message =
            format!("`skip` fields are not stored, so `{name}` cannot apply: remove one of them");
        errors.push(Error::custom(message).with_span(&f.skip.span()));
    }
}

/// The integer types an id can have: a database identity, or assigned by
/// the application with `id(assigned)`.
const INTEGER_IDS: &[&str] = &["i64", "i32", "i16"];

/// Rule: the id is `Uuid` or `ObjectId` (generated), `i64`, `i32` or `i16`
/// (database identity, or the application's with `id(assigned)`) or `String`
/// (assigned), never optional; `version` is `i64`; timestamps are `DateTime<Utc>`.
fn role_type(f: &RepoField, role: Role, errors: &mut Accumulator) {
    let (allowed, example): (&[&str], &str) = match role {
        // Checked by `soft_delete_rules` and `tenant_rules`, pointing at the attribute.
        Role::Data | Role::SoftDelete | Role::Tenant => return,
        Role::Id => (
            &["Uuid", "ObjectId", "i64", "i32", "i16", "String"],
            ID_TYPES,
        ),
        Role::Version => (&["i64"], "`i64`"),
        Role::CreatedAt | Role::UpdatedAt => (&["DateTime"], "`DateTime<Utc>`"),
    };
    if option_inner(&f.ty).is_some() || !is_one_of(&f.ty, allowed) {
        let found = last_segment(&f.ty).unwrap_or_else(|| "this type".to_owned());
        let message = format!(
            "a `{}` field must be {example}, found `{found}`",
            role.attribute()
        );
        errors.push(Error::custom(message).with_span(&f.ty));
    }
}

/// The id types, as messages list them.
const ID_TYPES: &str = "`Uuid`, `ObjectId`, `i64`, `i32`, `i16` or `String`";

/// Rule: `id(assigned)` is on an integer id: a `String` id is always the
/// application's, and a `Uuid` or `ObjectId` id is kept when given (and
/// generated only when nil or zero), so `assigned` would change nothing.
fn assigned_is_an_integer(f: &RepoField, errors: &mut Accumulator) {
    let Some(id) = &f.id else { return };
    let Override::Explicit(attr) = &**id else {
        return;
    };
    if attr.assigned.is_present() && !is_one_of(&f.ty, INTEGER_IDS) {
        let found = last_segment(&f.ty).unwrap_or_else(|| "this type".to_owned());
        let message = format!(
            "`assigned` applies to integer ids (`i64`, `i32`, `i16`), found `{found}`: a `String` \
             id is always the application's, and a `Uuid` or `ObjectId` id is kept when given; \
             write #[repo(id)]"
        );
        errors.push(Error::custom(message).with_span(&attr.assigned.span()));
    }
}

/// Rule: `json` applies to plain data fields; keys, versions and timestamps have fixed types.
fn json_is_plain_data(f: &RepoField, role: Role, errors: &mut Accumulator) {
    if f.json.is_present() && role != Role::Data {
        let message = "`json` cannot be combined with id, version or timestamp roles";
        errors.push(Error::custom(message).with_span(&f.json.span()));
    }
    if f.json.is_present() && f.unique.is_present() {
        let message = "`unique` on a JSON field is not supported: index a plain field instead";
        errors.push(Error::custom(message).with_span(&f.unique.span()));
    }
}

/// Rule: `unique` already creates an index, and the id is the primary key.
fn index_flags(f: &RepoField, role: Role, errors: &mut Accumulator) {
    if f.unique.is_present() && f.index.is_present() {
        let message = "`unique` already creates an index: remove `index`";
        errors.push(Error::custom(message).with_span(&f.index.span()));
    }
    if role == Role::Id {
        for flag in [&f.unique, &f.index]
            .into_iter()
            .filter(|flag| flag.is_present())
        {
            let message = "the id is the primary key, already unique and indexed: remove this";
            errors.push(Error::custom(message).with_span(&flag.span()));
        }
    }
}

/// Rule: exactly one field is the id.
fn exactly_one_id(input: &RepoInput, fields: &[Field], errors: &mut Accumulator) -> Option<IdKind> {
    let ids: Vec<&Field> = fields.iter().filter(|f| f.role == Role::Id).collect();
    match ids.as_slice() {
        [] => {
            let message =
                format!("no id field: mark the primary key with #[repo(id)] (a {ID_TYPES} field)");
            errors.push(Error::custom(message).with_span(&input.ident));
            None
        }
        [id] => Some(id_kind(input, id)),
        [_, extra @ ..] => {
            for field in extra {
                let message = "only one field can be #[repo(id)]; composite keys are not supported";
                errors.push(Error::custom(message).with_span(&field.ident));
            }
            None
        }
    }
}

/// Who assigns the id: the type decides (`Uuid`, `ObjectId`: generated;
/// an integer: the database; `String`: the application), except that
/// `id(assigned)` makes an integer id the application's.
fn id_kind(input: &RepoInput, id: &Field) -> IdKind {
    let assigned = input
        .fields()
        .iter()
        .find(|f| f.ident.as_ref() == Some(&id.ident))
        .and_then(|f| f.id.as_ref())
        .is_some_and(|attr| match &**attr {
            Override::Explicit(attr) => attr.assigned.is_present(),
            Override::Inherit => false,
        });
    match last_segment(&id.ty).as_deref() {
        Some("i64" | "i32" | "i16") if assigned => IdKind::Assigned,
        Some("i64" | "i32" | "i16") => IdKind::Identity,
        Some("String") => IdKind::Assigned,
        Some("ObjectId") => IdKind::ObjectId,
        _ => IdKind::Uuid,
    }
}

/// Rule: at most one field has each managed role.
fn at_most_one(fields: &[Field], role: Role, name: &str, errors: &mut Accumulator) {
    for extra in fields.iter().filter(|f| f.role == role).skip(1) {
        let message = format!("only one field can be #[repo({name})]");
        errors.push(Error::custom(message).with_span(&extra.ident));
    }
}

/// Rule: `soft_delete` is on one field at most, and that field is an
/// `Option<DateTime<Utc>>`: NULL while the row is live, the deletion time
/// once deleted. Both errors point at the attribute.
fn soft_delete_rules(fields: &[RepoField], errors: &mut Accumulator) {
    let marked = fields.iter().filter(|f| f.soft_delete.is_present());
    for (n, f) in marked.enumerate() {
        let span = f.soft_delete.span();
        if n > 0 {
            let message = "only one field can be #[repo(soft_delete)]: a row is deleted once, \
                           at one time";
            errors.push(Error::custom(message).with_span(&span));
            continue;
        }
        let timestamp = option_inner(&f.ty).is_some_and(|t| is_one_of(t, &["DateTime"]));
        if !timestamp {
            let name = |ty| last_segment(ty).unwrap_or_else(|| "this type".to_owned());
            let found = match option_inner(&f.ty) {
                Some(inner) => format!("Option<{}>", name(inner)),
                None => name(&f.ty),
            };
            let message = format!(
                "a `soft_delete` field must be `Option<DateTime<Utc>>` (None while the row is \
                 live), found `{found}`"
            );
            errors.push(Error::custom(message).with_span(&span));
        }
    }
}

/// The types a tenant field can have.
const TENANT_TYPES: &[&str] = &["String", "Uuid", "i64", "i32", "i16"];

/// Rule: `tenant` is on one field at most; that field is a `String`, a
/// `Uuid` or an integer, never an `Option` (every row has an owner), and
/// is stored as a plain column (not `json`, a vector or full text) so the
/// scope and PostgreSQL's row-level security policy compare it with `=`.
/// Every error points at the attribute.
fn tenant_rules(fields: &[RepoField], errors: &mut Accumulator) {
    let marked = fields.iter().filter(|f| f.tenant.is_present());
    for (n, f) in marked.enumerate() {
        let span = f.tenant.span();
        if n > 0 {
            let message = "only one field can be #[repo(tenant)]: a row belongs to one tenant";
            errors.push(Error::custom(message).with_span(&span));
            continue;
        }
        if option_inner(&f.ty).is_some() || !is_one_of(&f.ty, TENANT_TYPES) {
            let found = last_segment(&f.ty).unwrap_or_else(|| "this type".to_owned());
            let message = format!(
                "a `tenant` field must be `String`, `Uuid`, `i64`, `i32` or `i16` (never an \
                 `Option`: every row has an owner), found `{found}`"
            );
            errors.push(Error::custom(message).with_span(&span));
        }
        let storage = [
            (f.json.is_present(), "json"),
            (f.vector.is_some(), "vector"),
            (f.full_text.is_some(), "full_text"),
        ];
        for (_, name) in storage.iter().filter(|(present, _)| *present) {
            let message = format!(
                "a `tenant` field is a plain column compared with `=`, so `{name}` cannot apply: \
                 remove one of them"
            );
            errors.push(Error::custom(message).with_span(&span));
        }
    }
}

/// Rule: two fields never share a column name.
fn distinct_columns(fields: &[Field], errors: &mut Accumulator) {
    let stored: Vec<&Field> = fields
        .iter()
        .filter(|f| f.storage != Storage::Skipped)
        .collect();
    for (i, field) in stored.iter().enumerate() {
        if let Some(first) = stored[..i].iter().find(|f| f.column == field.column) {
            let message = format!(
                "column `{}` is already used by field `{}`: give one a different #[repo(column = \"...\")]",
                field.column, first.ident
            );
            errors.push(Error::custom(message).with_span(&field.ident));
        }
    }
}

/// Rule: the names Postgres derives from the table and column (`<table>_pkey`,
/// `<table>_<column>_key`, `<table>_<column>_idx`) fit in 63 bytes; a longer
/// one would be truncated and conflicts could no longer name their field.
fn generated_names_fit(input: &RepoInput, table: &str, fields: &[Field], errors: &mut Accumulator) {
    // A table name over the limit is already reported by `valid_name`.
    if table.len() <= MAX_IDENTIFIER && table.len() + "_pkey".len() > MAX_IDENTIFIER {
        let message = format!(
            "the table name `{table}` leaves no room for its primary key constraint \
             `{table}_pkey` within 63 bytes: use a shorter #[repo(table = \"...\")]"
        );
        errors.push(Error::custom(message).with_span(&input.ident));
    }
    let vector_indexed = |f: &Field| {
        f.vector
            .as_ref()
            .is_some_and(|v| v.index != VectorIndexModel::None)
    };
    let full_text_index = naming::index_name(table, search_rules::FULL_TEXT_COLUMN, false);
    if fields.iter().any(|f| f.full_text.is_some()) && full_text_index.len() > MAX_IDENTIFIER {
        let message = format!(
            "the full-text index name `{full_text_index}` is longer than 63 bytes: \
             use a shorter #[repo(table = \"...\")]"
        );
        errors.push(Error::custom(message).with_span(&input.ident));
    }
    for field in fields.iter().filter(|f| f.references.is_some()) {
        let name = reposmith_fk_name(table, &field.column);
        if name.len() > MAX_IDENTIFIER {
            let message = format!(
                "the foreign key name `{name}` is longer than 63 bytes: shorten the table name \
                 or give the field a shorter #[repo(column = \"...\")]"
            );
            errors.push(Error::custom(message).with_span(&field.ident));
        }
    }
    for field in fields
        .iter()
        .filter(|f| f.unique || f.index || f.references.is_some() || vector_indexed(f))
    {
        let name = naming::index_name(table, &field.column, field.unique);
        if name.len() > MAX_IDENTIFIER {
            let message = format!(
                "the index name `{name}` is longer than 63 bytes: shorten the table name or \
                 give the field a shorter #[repo(column = \"...\")]"
            );
            errors.push(Error::custom(message).with_span(&field.ident));
        }
    }
}

/// The foreign key name the Postgres DDL gives a reference (the core's
/// `foreign_key_name`): `<table>_<column>_fkey`.
fn reposmith_fk_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_fkey")
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_ttl};

    #[test]
    fn durations_allow_zero_but_lifetimes_do_not() {
        assert_eq!(parse_duration("0s"), Some(0));
        assert_eq!(parse_ttl("0s"), None);
        assert_eq!(parse_duration("5m"), Some(300));
        for bad in ["+5m", "5 m", " 5m", "5", "m", "5ms", "5M"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn lifetimes_read_whole_units() {
        assert_eq!(parse_ttl("90s"), Some(90));
        assert_eq!(parse_ttl("15m"), Some(900));
        assert_eq!(parse_ttl("30d"), Some(2_592_000));
        assert_eq!(parse_ttl("2w"), Some(1_209_600));
        for bad in [
            "",
            "d",
            "0d",
            "1.5h",
            "-3d",
            "30 days",
            "30D",
            "99999999999999999999w",
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }
}
