//! Stage 3: code generated from the checked model, one file per artifact.
//!
//! Everything lands inside `const _: () = { ... };` and names only
//! `::reposmith::__private`, so the user's scope (their own `Result`,
//! `Option`, lints) cannot change what the code means. The column constants
//! and the finder trait are the only items the user names.

mod columns;
mod entity_impl;
mod fallback;
mod finders;
mod relations;
mod schema;

use proc_macro2::TokenStream;
use quote::quote;

use super::model::Entity;

pub(crate) use fallback::{fallback, fallback_api};

/// All generated code for `entity`.
pub(crate) fn expand(entity: &Entity) -> TokenStream {
    let schema = schema::schema_static(entity);
    let entity_impl = entity_impl::entity_impl(entity);
    let columns = columns::column_constants(entity);
    let finders = finders::finder_trait(entity);
    let checks = relations::reference_checks(entity);
    let relations = relations::relation_constants(entity);
    quote! {
        const _: () = {
            #schema
            #entity_impl
            #checks
        };
        #columns
        #relations
        #finders
    }
}
