//! What the derive emits when the attributes are wrong: the errors, plus an
//! `Entity` impl, the column constants and the finder trait, so code using
//! the entity (`Entity::TITLE`, `find_by_slug`) does not add a second error
//! per use. Their bodies never run, because the crate does not compile.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Ident;

use crate::repository::model::Entity;

/// The compile errors and a placeholder `Entity` impl.
pub(crate) fn fallback(ident: &Ident, errors: TokenStream) -> TokenStream {
    quote! {
        #errors
        const _: () = {
            impl ::reposmith::__private::PostgresEntity for #ident {}
            impl ::reposmith::__private::MongoEntity for #ident {}
            impl ::reposmith::__private::Entity for #ident {
                type Id = ::std::string::String;
                const SCHEMA: &'static ::reposmith::__private::EntitySchema =
                    &::reposmith::__private::FALLBACK_SCHEMA;

                fn id(&self) -> &Self::Id {
                    ::core::unreachable!()
                }

                fn to_values(
                    &self,
                ) -> ::reposmith::__private::Result<::std::vec::Vec<::reposmith::__private::Value>> {
                    ::core::unreachable!()
                }

                fn from_values(
                    _: ::std::vec::Vec<::reposmith::__private::Value>,
                ) -> ::reposmith::__private::Result<Self> {
                    ::core::unreachable!()
                }
            }
        };
    }
}

/// The column constants and the finder trait of `entity`, the placeholder
/// model read leniently from the broken attributes (see `lenient`).
pub(crate) fn fallback_api(entity: &Entity) -> TokenStream {
    let columns = super::columns::column_constants(entity);
    let finders = super::finders::finder_trait(entity);
    // Pinned where the entity said, so `store.repo::<E>()` adds no error.
    let pinned = super::entity_impl::pinned_impl(entity);
    quote! {
        #columns
        #finders
        #pinned
    }
}
