//! Typed column constants: `Document::TITLE`, the only way filters name columns.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::naming;
use crate::repository::model::{Entity, Field, Storage};

/// `impl T { pub const FIELD: Column<T, FieldType> = Column::at(i); ... }`
pub(super) fn column_constants(entity: &Entity) -> TokenStream {
    let ident = &entity.ident;
    let constants = entity
        .columns()
        .enumerate()
        .map(|(index, field)| column_constant(entity, index, field));
    quote! {
        impl #ident {
            #(#constants)*
        }
    }
}

fn column_constant(entity: &Entity, index: usize, field: &Field) -> TokenStream {
    let entity_ident = &entity.ident;
    let vis = &entity.vis;
    let name = format_ident!("{}", naming::column_const(&field.ident.to_string()));
    let doc = format!(
        "Column `{}` of `{}` (field `{}`), for typed filters and ordering.",
        field.column, entity_ident, field.ident
    );
    let ty = &field.ty;
    let column_ty = match field.storage {
        Storage::Json => quote!(::reposmith::__private::JsonColumn<#entity_ident>),
        _ => quote!(::reposmith::__private::Column<#entity_ident, #ty>),
    };
    let constructor = match field.storage {
        Storage::Json => quote!(::reposmith::__private::JsonColumn::at(#index)),
        _ => quote!(::reposmith::__private::Column::at(#index)),
    };
    quote! {
        #[doc = #doc]
        #vis const #name: #column_ty = #constructor;
    }
}
