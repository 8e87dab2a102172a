//! `impl Entity`: the id accessor and the mapping between fields and stored values.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::repository::model::{Entity, Field, Storage};
use crate::repository::types::option_inner;

/// `impl ::reposmith::__private::Entity for T { ... }`, and the marker
/// traits of the backends that store `T`.
pub(super) fn entity_impl(entity: &Entity) -> TokenStream {
    let ident = &entity.ident;
    let id = &entity.id_field().ident;
    let id_ty = &entity.id_field().ty;
    let encoders = entity.columns().map(encode_field);
    let decoders = entity.fields.iter().map(decode_field);
    let postgres = entity
        .backends
        .postgres()
        .then(|| quote!(impl ::reposmith::__private::PostgresEntity for #ident {}));
    let mongo = entity
        .backends
        .mongo()
        .then(|| quote!(impl ::reposmith::__private::MongoEntity for #ident {}));
    let pinned = pinned_impl(entity);
    quote! {
        #postgres
        #mongo
        #pinned

        // What a `#[repo(references(#ident))]` field must hold.
        impl ::reposmith::__private::IdOf<#ident> for #id_ty {
            fn as_id(&self) -> &#id_ty {
                self
            }
        }

        impl ::reposmith::__private::Entity for #ident {
            type Id = #id_ty;
            const SCHEMA: &'static ::reposmith::__private::EntitySchema = &__REPOSMITH_SCHEMA;

            fn id(&self) -> &Self::Id {
                &self.#id
            }

            fn to_values(
                &self,
            ) -> ::reposmith::__private::Result<::std::vec::Vec<::reposmith::__private::Value>> {
                ::core::result::Result::Ok(::std::vec![#(#encoders),*])
            }

            fn from_values(
                values: ::std::vec::Vec<::reposmith::__private::Value>,
            ) -> ::reposmith::__private::Result<Self> {
                let mut values = values.into_iter();
                ::core::result::Result::Ok(Self { #(#decoders),* })
            }
        }
    }
}

/// `impl Pinned` for an entity stored in exactly one backend, so
/// `store.repo::<T>()` finds its backend from the type.
pub(super) fn pinned_impl(entity: &Entity) -> Option<TokenStream> {
    let ident = &entity.ident;
    let home = match (entity.backends.postgres(), entity.backends.mongo()) {
        (true, false) => quote!(::reposmith::__private::home::Postgres),
        (false, true) => quote!(::reposmith::__private::home::Mongo),
        _ => return None,
    };
    Some(quote! {
        impl ::reposmith::__private::home::Pinned for #ident {
            type Home = #home;
        }
    })
}

/// The field's name carrying its type's span, so a failed trait bound on
/// the access is reported at the type, where the bound checks point too.
fn respanned(field: &Field) -> syn::Ident {
    let mut ident = field.ident.clone();
    ident.set_span(field.span);
    ident
}

fn encode_field(field: &Field) -> TokenStream {
    let ident = respanned(field);
    let name = field.ident.to_string();
    match field.storage {
        Storage::Json => {
            let nullable = option_inner(&field.ty).is_some();
            quote_spanned! {field.span=>
                ::reposmith::__private::encode_json::<Self, _>(&self.#ident, #name, #nullable)?
            }
        }
        _ => quote_spanned! {field.span=>
            ::reposmith::__private::FieldType::to_value(&self.#ident)
        },
    }
}

fn decode_field(field: &Field) -> TokenStream {
    let ident = &field.ident;
    let name = ident.to_string();
    let span = field.span;
    match field.storage {
        Storage::Skipped => quote!(#ident: ::core::default::Default::default()),
        Storage::Json => quote_spanned! {span=>
            #ident: ::reposmith::__private::decode_json::<Self, _>(&mut values, #name)?
        },
        Storage::Typed => quote_spanned! {span=>
            #ident: ::reposmith::__private::decode::<Self, _>(&mut values, #name)?
        },
    }
}
