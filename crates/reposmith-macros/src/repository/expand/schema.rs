//! The static `EntitySchema` and the per-field type checks.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::repository::model::{Entity, Field, IdKind, Role, Storage};
use crate::repository::types::option_inner;

/// `static __REPOSMITH_SCHEMA: EntitySchema = ...;`
pub(super) fn schema_static(entity: &Entity) -> TokenStream {
    let name = entity.ident.to_string();
    let table = &entity.table;
    let columns = entity.columns().map(column_def);
    let id = entity.id_position();
    let strategy = match entity.id_kind {
        IdKind::Uuid => quote!(ClientUuid),
        IdKind::I64 => quote!(Identity),
        IdKind::String => quote!(Assigned),
    };
    let indexes = entity.columns().filter_map(|f| index_def(entity, f));
    let with_schema = entity.schema.as_ref().map(|s| quote!(.with_schema(#s)));
    quote! {
        static __REPOSMITH_SCHEMA: ::reposmith::__private::EntitySchema =
            ::reposmith::__private::EntitySchema::new(
                #name,
                #table,
                &[#(#columns),*],
                #id,
                ::reposmith::__private::IdStrategy::#strategy,
                &[#(#indexes),*],
            )
            #with_schema;
    }
}

fn column_def(field: &Field) -> TokenStream {
    let name = field.ident.to_string();
    let column = &field.column;
    let ty = &field.ty;
    // One spanned use of the type carries both facts, so an unsupported type
    // is reported here once, pointing at the field's type.
    let meta = match field.storage {
        Storage::Json => {
            let nullable = option_inner(ty).is_some();
            quote!((::reposmith::__private::ColumnType::Json, #nullable))
        }
        _ => quote_spanned!(field.span=> ::reposmith::__private::column_meta::<#ty>()),
    };
    let role = match field.role {
        Role::Data => None,
        Role::Id => Some(quote!(Id)),
        Role::Version => Some(quote!(Version)),
        Role::CreatedAt => Some(quote!(CreatedAt)),
        Role::UpdatedAt => Some(quote!(UpdatedAt)),
    };
    let role = role.map(|r| quote!(.with_role(::reposmith::__private::ColumnRole::#r)));
    let unique = field.unique.then(|| quote!(.with_unique()));
    let default = field
        .default_sql
        .as_ref()
        .map(|d| quote!(.with_default(#d)));
    quote! {
        ::reposmith::__private::ColumnDef::from_meta(#name, #column, #meta)
            #role #unique #default
    }
}

/// A unique (`<table>_<column>_key`) or plain (`<table>_<column>_idx`) index;
/// plain indexes on JSON columns use GIN so containment filters can use them.
fn index_def(entity: &Entity, field: &Field) -> Option<TokenStream> {
    let (suffix, unique) = match (field.unique, field.index) {
        (true, _) => ("key", true),
        (false, true) => ("idx", false),
        (false, false) => return None,
    };
    let name = format!("{}_{}_{suffix}", entity.table, field.column);
    let column = &field.column;
    let method = match field.storage {
        Storage::Json => quote!(Gin),
        _ => quote!(BTree),
    };
    Some(quote! {
        ::reposmith::__private::IndexDef::new(
            #name, &[#column], #unique, ::reposmith::__private::IndexMethod::#method,
        )
    })
}
