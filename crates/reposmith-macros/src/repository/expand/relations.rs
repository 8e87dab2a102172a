//! `#[repo(references(..))]`: the typed relation constants
//! (`Chunk::DOCUMENT`) the loaders take, and the bound checks that let the
//! type checker judge what the derive cannot see: the target is an entity
//! stored wherever this one is, and (in the constant) the field holds the
//! target's id type.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};

use crate::repository::model::{Entity, Field};
use crate::repository::types::option_inner;

/// `impl T { pub const DOCUMENT: Relation<T, Document> = ...; }`, or nothing.
pub(super) fn relation_constants(entity: &Entity) -> TokenStream {
    let constants: Vec<TokenStream> = entity
        .columns()
        .enumerate()
        .filter_map(|(index, field)| relation_constant(entity, index, field))
        .collect();
    if constants.is_empty() {
        return TokenStream::new();
    }
    let ident = &entity.ident;
    quote! {
        impl #ident {
            #(#constants)*
        }
    }
}

fn relation_constant(entity: &Entity, index: usize, field: &Field) -> Option<TokenStream> {
    let reference = field.references.as_ref()?;
    let (ident, vis, target) = (&entity.ident, &entity.vis, &reference.target);
    let name = format_ident!("{}", reference.constant);
    let member = &field.ident;
    let doc = format!(
        "The relation `{ident}.{member}` → `{}`, for `load_for` and `parents_of`.",
        quote!(#target).to_string().replace(' ', "")
    );
    // `reference_key` is the id type check: its `IdOf` bound fails, at the
    // attribute, when the field does not hold the target's id.
    let key = match option_inner(&field.ty) {
        Some(_) => quote_spanned! {reference.span=>
            ::core::option::Option::map(
                ::core::option::Option::as_ref(&child.#member),
                ::reposmith::__private::reference_key::<#target, _>,
            )
        },
        None => quote_spanned! {reference.span=>
            ::core::option::Option::Some(
                ::reposmith::__private::reference_key::<#target, _>(&child.#member),
            )
        },
    };
    Some(quote! {
        #[doc = #doc]
        #vis const #name: ::reposmith::__private::Relation<#ident, #target> = {
            fn key(
                child: &#ident,
            ) -> ::core::option::Option<&<#target as ::reposmith::__private::Entity>::Id> {
                #key
            }
            ::reposmith::__private::Relation::new(#index, key)
        };
    })
}

/// One `const` bound check per reference and backend, spanned on the
/// target, so a mistake is reported at the attribute with the traits'
/// `on_unimplemented` messages.
pub(super) fn reference_checks(entity: &Entity) -> TokenStream {
    entity
        .columns()
        .filter_map(|field| {
            let reference = field.references.as_ref()?;
            let target = &reference.target;
            let span = reference.span;
            let postgres = entity.backends.postgres().then(|| {
                quote_spanned! {span=>
                    const _: () = ::reposmith::__private::reference_in_postgres::<#target>();
                }
            });
            let mongo = entity.backends.mongo().then(|| {
                quote_spanned! {span=>
                    const _: () = ::reposmith::__private::reference_in_mongo::<#target>();
                }
            });
            // The id type is checked once, by the relation constant's
            // `reference_key` (spanned here too).
            Some(quote_spanned! {span=>
                #postgres
                #mongo
            })
        })
        .collect()
}
