//! The entity as far as broken attributes can be read, for the fallback:
//! when `check` (or darling) refuses an entity, its column constants and
//! finders are still generated from this model, so every `Entity::TITLE` and
//! `find_by_slug` across the crate compiles and the user sees only the
//! attribute errors. It reads each field's top-level `#[repo(..)]` keys
//! without judging them; nothing here reaches a database, because the crate
//! does not compile.

use std::collections::HashSet;

use proc_macro2::TokenTree;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields};

use super::kinds::{BackendChoice, Reads, VectorKind};
use super::model::{Entity, Field, IdKind, Role, Storage, VectorIndexModel, VectorModel};
use super::types::{last_segment, option_inner};
use crate::naming;

/// A placeholder model of `input` carrying what the column constants and
/// the finder trait read: fields, storage, `unique`/`index`, and which
/// fields are searchable vectors.
pub(crate) fn entity(input: &DeriveInput) -> Entity {
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => distinct_constants(named.named.iter().filter_map(field)),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    Entity {
        ident: input.ident.clone(),
        vis: input.vis.clone(),
        table: String::new(),
        schema: None,
        collection: None,
        backends: backend(&input.attrs),
        fields,
        id_kind: IdKind::Assigned,
        // The finders' bodies never run: whether they would read the cache
        // does not matter.
        cache: None,
        // Nor where they would read from.
        reads: Reads::Replica,
    }
}

/// The fields, each stored one with a constant name of its own: a later
/// field whose constant would repeat one (`id` and `_id` are both `ID`) is
/// left out, where `check` has reported the clash of their stored names.
fn distinct_constants(fields: impl Iterator<Item = Field>) -> Vec<Field> {
    let mut seen = HashSet::new();
    fields
        .map(|mut field| {
            let constant = naming::column_const(&field.ident.to_string());
            if field.storage != Storage::Skipped && !seen.insert(constant) {
                field.storage = Storage::Skipped;
            }
            field
        })
        .collect()
}

fn field(f: &syn::Field) -> Option<Field> {
    let ident = f.ident.clone()?;
    let keys = keys(&f.attrs);
    let has = |key: &str| keys.iter().any(|k| k == key);
    let storage = if has("skip") {
        Storage::Skipped
    } else if has("json") {
        Storage::Json
    } else {
        Storage::Typed
    };
    // A search method is generated only where its bounds hold: on a field
    // whose type is a pgvector type.
    let kind = last_segment(option_inner(&f.ty).unwrap_or(&f.ty))
        .and_then(|name| VectorKind::from_type_name(&name))
        .filter(|_| has("vector") && storage == Storage::Typed);
    let vector = kind.map(|kind| VectorModel {
        kind,
        dims: 1,
        distance: kind.default_distance(),
        index: VectorIndexModel::None,
    });
    Some(Field {
        column: ident.to_string(),
        ty: f.ty.clone(),
        role: Role::Data,
        storage,
        unique: has("unique"),
        index: has("index"),
        default_sql: None,
        embed_from: (vector.is_some() && has("embed")).then(String::new),
        vector,
        full_text: has("full_text").then(String::new),
        renamed_from: None,
        ttl_seconds: None,
        references: None,
        span: f.ty.span(),
        ident,
    })
}

/// The struct's `backend = "postgres" | "mongo"`, read past other mistakes,
/// so the fallback pins the entity where it was declared (a misspelt or
/// absent value reads as both backends: nothing pinned).
fn backend(attrs: &[Attribute]) -> BackendChoice {
    for attr in attrs.iter().filter(|a| a.path().is_ident("repo")) {
        let Ok(list) = attr.meta.require_list() else {
            continue;
        };
        let trees: Vec<TokenTree> = list.tokens.clone().into_iter().collect();
        for window in trees.windows(3) {
            let [
                TokenTree::Ident(key),
                TokenTree::Punct(eq),
                TokenTree::Literal(value),
            ] = window
            else {
                continue;
            };
            if key != "backend" || eq.as_char() != '=' {
                continue;
            }
            match value.to_string().as_str() {
                "\"postgres\"" => return BackendChoice::Postgres,
                "\"mongo\"" => return BackendChoice::Mongo,
                _ => return BackendChoice::Both,
            }
        }
    }
    BackendChoice::Both
}

/// The top-level keys of every `#[repo(..)]` attribute (`unique`, `column`,
/// `vector`, ...), whatever follows them and however malformed the rest is.
fn keys(attrs: &[Attribute]) -> Vec<String> {
    let mut keys = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("repo")) {
        let Ok(list) = attr.meta.require_list() else {
            continue;
        };
        let mut at_start = true;
        for tree in list.tokens.clone() {
            match tree {
                TokenTree::Ident(ident) if at_start => keys.push(ident.to_string()),
                TokenTree::Punct(p) if p.as_char() == ',' => {
                    at_start = true;
                    continue;
                }
                _ => {}
            }
            at_start = false;
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    #[test]
    fn reads_keys_past_mistakes() {
        let input: DeriveInput = parse_quote! {
            struct Doc {
                #[repo(colum = "x", unique)]
                slug: String,
                #[repo(vector(dims = 3, distance = "cosin"), embed(from = "slug"))]
                e: Option<Vector>,
                #[repo(json, index)]
                meta: Meta,
                #[repo(skip)]
                cache: u8,
                id: Uuid,
                _id: String,
            }
        };
        let entity = entity(&input);
        assert!(entity.fields[0].unique && !entity.fields[0].index);
        assert!(entity.fields[1].vector.is_some() && entity.fields[1].embed_from.is_some());
        assert_eq!(entity.fields[2].storage, Storage::Json);
        // `cache` is skipped, and `_id` would repeat `id`'s constant `ID`.
        assert_eq!(entity.columns().count(), 4);
        assert_eq!(entity.fields[5].storage, Storage::Skipped);
    }

    #[test]
    fn reads_the_backend_past_mistakes() {
        let pinned: DeriveInput = parse_quote! {
            #[repo(collection = "t", backend = "mongo", tabel = "x")]
            struct Trace { id: u8 }
        };
        assert_eq!(entity(&pinned).backends, BackendChoice::Mongo);
        let postgres: DeriveInput = parse_quote! {
            #[repo(backend = "postgres")]
            #[repo(tabel = "x")]
            struct Doc { id: u8 }
        };
        assert_eq!(entity(&postgres).backends, BackendChoice::Postgres);
        let misspelt: DeriveInput = parse_quote! {
            #[repo(backend = "mongodb")]
            struct Chat { id: u8 }
        };
        assert_eq!(entity(&misspelt).backends, BackendChoice::Both);
    }
}
