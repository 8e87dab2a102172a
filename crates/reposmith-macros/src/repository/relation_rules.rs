//! `#[repo(references(Target, on_delete = ".."))]`: parsed by hand (a
//! positional type then named options, which darling's derives do not
//! read), and its rules. The rules the type checker judges better (the
//! target's backends, its id type) are generated as spanned bound checks
//! (`expand/relations.rs`).

use darling::error::Accumulator;
use darling::{Error, FromMeta, Result};
use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Token};

use super::attr::RepoField;
use super::model::{Field, ReferenceModel, Role, Storage};
use super::types::option_inner;
use crate::naming;

/// The correct format, for every message about a malformed `references`.
const FORMAT: &str = "the correct format looks like \
    #[repo(references(Document, on_delete = \"cascade\"))] (on_delete: \"restrict\" (default), \
    \"cascade\" or \"set_null\")";

/// `references(Document, on_delete = "cascade")` as written.
pub(crate) struct ReferencesAttr {
    /// The referenced entity's path as written (maybe `Self`).
    pub(crate) target: syn::Path,
    /// `on_delete`, checked against the vocabulary, and where it is written.
    pub(crate) on_delete: Option<(&'static str, Span)>,
    /// The `references` key's span.
    pub(crate) span: Span,
}

impl FromMeta for ReferencesAttr {
    fn from_meta(meta: &Meta) -> Result<Self> {
        let Meta::List(list) = meta else {
            let message = format!("`references` names the referenced entity: {FORMAT}");
            return Err(Error::custom(message).with_span(meta));
        };
        let items = list
            .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .map_err(|e| Error::custom(format!("{e}: {FORMAT}")).with_span(&e.span()))?;
        let mut items = items.into_iter();
        let target = match items.next() {
            Some(Meta::Path(path)) => path,
            Some(other) => {
                let message = format!("`references` starts with the referenced entity: {FORMAT}");
                return Err(Error::custom(message).with_span(&other));
            }
            None => {
                let message = format!("`references` names the referenced entity: {FORMAT}");
                return Err(Error::custom(message).with_span(meta));
            }
        };
        let mut errors = Error::accumulator();
        let mut on_delete = None;
        for item in items {
            match &item {
                Meta::NameValue(nv) if nv.path.is_ident("on_delete") => {
                    if on_delete.is_some() {
                        errors.push(Error::duplicate_field("on_delete").with_span(&nv.path));
                    }
                    on_delete = errors.handle(action(&nv.value));
                }
                other => {
                    let message =
                        format!("unknown option in `references`: only `on_delete` is; {FORMAT}");
                    errors.push(Error::custom(message).with_span(&other.path()));
                }
            }
        }
        errors.finish()?;
        Ok(ReferencesAttr {
            target,
            on_delete,
            span: meta.path().span(),
        })
    }
}

/// `"cascade"` → `("Cascade", span)`.
fn action(value: &Expr) -> Result<(&'static str, Span)> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(text),
        ..
    }) = value
    else {
        let message = format!("`on_delete` takes a string: {FORMAT}");
        return Err(Error::custom(message).with_span(value));
    };
    let variant = match text.value().as_str() {
        "restrict" => "Restrict",
        "cascade" => "Cascade",
        "set_null" => "SetNull",
        other => {
            let message = format!("unknown `on_delete` action {other:?}: {FORMAT}");
            return Err(Error::custom(message).with_span(text));
        }
    };
    Ok((variant, text.span()))
}

/// Checks one field's `references` and builds its model.
pub(crate) fn reference(
    f: &RepoField,
    role: Role,
    entity: &syn::Ident,
    errors: &mut Accumulator,
) -> Option<ReferenceModel> {
    let attr = f.references.as_ref()?;
    plain_field(f, role, attr, errors);
    set_null_is_optional(f, attr, errors);
    let ident = f.ident.as_ref()?;
    let mut target = attr.target.clone();
    // `Self` means the struct (a tree's `parent_id`); the schema static is
    // outside the struct's impl, where `Self` means nothing.
    if target.is_ident("Self") {
        target = syn::Path::from(entity.clone());
    }
    Some(ReferenceModel {
        target,
        on_delete: attr.on_delete.map_or("Restrict", |(v, _)| v),
        constant: relation_const(&ident.to_string()),
        span: attr.target.span(),
    })
}

/// Rule: a reference is a plain stored field: not the id, a version or a
/// timestamp, not JSON, not skipped, not a vector.
fn plain_field(f: &RepoField, role: Role, attr: &ReferencesAttr, errors: &mut Accumulator) {
    let clash = if role != Role::Data {
        Some(format!("`{}`", role.attribute()))
    } else if f.json.is_present() {
        Some("`json`".to_owned())
    } else if f.skip.is_present() {
        Some("`skip`".to_owned())
    } else if f.vector.is_some() {
        Some("`vector`".to_owned())
    } else {
        None
    };
    if let Some(clash) = clash {
        let message = format!(
            "`references` applies to a plain field holding the referenced entity's id, \
             not to a {clash} field"
        );
        errors.push(Error::custom(message).with_span(&attr.span));
    }
}

/// Rule: `on_delete = "set_null"` needs somewhere to put the NULL: an
/// `Option` field.
fn set_null_is_optional(f: &RepoField, attr: &ReferencesAttr, errors: &mut Accumulator) {
    if let Some(("SetNull", span)) = attr.on_delete
        && option_inner(&f.ty).is_none()
    {
        let message = "`on_delete = \"set_null\"` needs an `Option` field to set to NULL: \
                       make the field `Option<..>` or use \"cascade\" or \"restrict\"";
        errors.push(Error::custom(message).with_span(&span));
    }
}

/// The relation constant of field `field`: `document_id` → `DOCUMENT`;
/// a field not ending in `_id` gets `_REL` (`parent` → `PARENT_REL`).
pub(crate) fn relation_const(field: &str) -> String {
    match field.strip_suffix("_id").filter(|s| !s.is_empty()) {
        Some(stem) => naming::column_const(stem),
        None => format!("{}_REL", naming::column_const(field)),
    }
}

/// Rule: a relation constant does not take the name of a column constant
/// (a field `document` beside `document_id`), which would not compile.
pub(crate) fn distinct_constants(fields: &[Field], errors: &mut Accumulator) {
    for field in fields.iter().filter(|f| f.storage != Storage::Skipped) {
        let Some(reference) = &field.references else {
            continue;
        };
        let taken = fields.iter().find(|other| {
            other.storage != Storage::Skipped
                && naming::column_const(&other.ident.to_string()) == reference.constant
        });
        if let Some(other) = taken {
            let message = format!(
                "the relation constant `{}` of this reference is already the column constant \
                 of field `{}`: rename one of the fields",
                reference.constant, other.ident
            );
            errors.push(Error::custom(message).with_span(&reference.span));
        }
    }
}

/// Rule: `on_delete` is a PostgreSQL foreign key action; MongoDB has no
/// foreign keys, so on a MongoDB-only entity it would promise nothing.
pub(crate) fn no_action_on_mongo(input: &super::attr::RepoInput, errors: &mut Accumulator) {
    for attr in input.fields().iter().filter_map(|f| f.references.as_ref()) {
        if let Some((_, span)) = attr.on_delete {
            let message = "MongoDB has no foreign keys, so `on_delete` would not be enforced on \
                           this #[repo(backend = \"mongo\")] entity: remove it (the reference \
                           still gives the relation loaders)";
            errors.push(Error::custom(message).with_span(&span));
        }
    }
}

/// Rule: a cached entity's references restrict. A `cascade` or `set_null`
/// key deletes or changes its rows inside PostgreSQL, past the repository
/// that invalidates the cache, so cached rows would outlive them.
pub(crate) fn cached_references_restrict(input: &super::attr::RepoInput, errors: &mut Accumulator) {
    if input.cache.is_empty() {
        return;
    }
    let actions = input
        .fields()
        .iter()
        .filter_map(|f| f.references.as_ref()?.on_delete)
        .filter(|(action, _)| *action != "Restrict");
    for (_, span) in actions {
        let message = "a cached entity cannot have `on_delete = \"cascade\"` or \"set_null\": \
                       the database would delete or change its rows past the repository, and \
                       the cache would keep serving them; use \"restrict\" (delete the rows \
                       through the repository first) or remove `cache(..)`";
        errors.push(Error::custom(message).with_span(&span));
    }
}
