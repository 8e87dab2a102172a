//! The `<Entity>Repository` extension trait: `find_by_<field>` for unique
//! fields and `find_all_by_<field>` for indexed ones, on every repository of
//! the entity whatever its backend.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::repository::model::{Entity, Field, Storage};

/// `pub trait DocumentRepository: Repository<Document> { ... }` and its blanket impl.
pub(super) fn finder_trait(entity: &Entity) -> TokenStream {
    let ident = &entity.ident;
    let vis = &entity.vis;
    let trait_ident = format_ident!("{}Repository", ident);
    let doc = format!(
        "Finders for `{ident}` generated from its unique and indexed fields; \
         implemented by every `Repository<{ident}>`."
    );
    let finders = entity
        .columns()
        .filter(|f| f.storage == Storage::Typed && (f.unique || f.index))
        .map(|f| finder(entity, f));
    let searches = searches(entity);
    quote! {
        #[doc = #doc]
        #vis trait #trait_ident: ::reposmith::__private::Repository<#ident> {
            #(#finders)*
            #searches
        }

        impl<R: ::reposmith::__private::Repository<#ident>> #trait_ident for R {}
    }
}

fn finder(entity: &Entity, field: &Field) -> TokenStream {
    let ident = &entity.ident;
    let ty = &field.ty;
    let column = format_ident!("{}", crate::naming::column_const(&field.ident.to_string()));
    let value = quote! {
        impl ::core::convert::Into<<#ty as ::reposmith::__private::FieldType>::Scalar>
            + ::core::marker::Send
    };
    if field.unique {
        let method = format_ident!("find_by_{}", field.ident);
        let mut doc = format!(
            "The `{ident}` whose `{}` equals `value`, if any.",
            field.ident
        );
        // A cached entity's unique lookups are served from the repository
        // cache for its ttl, as `get` is.
        let cached = entity.cache.map(|cache| {
            doc.push_str(
                " Read through the repository cache for the entity's cache ttl when the backend \
                 has a cache, outside units of work; a committed write to the entity invalidates \
                 the cached answer.",
            );
            let ttl_ms = cache.ttl_ms;
            quote!(.cached(::core::time::Duration::from_millis(#ttl_ms)))
        });
        quote! {
            #[doc = #doc]
            fn #method(
                &self,
                value: #value,
            ) -> impl ::core::future::Future<
                Output = ::reposmith::__private::Result<::core::option::Option<#ident>>,
            > + ::core::marker::Send
            where
                Self: ::core::marker::Sized,
            {
                let filter = #ident::#column.eq(value);
                async move {
                    ::reposmith::__private::Repository::find(self, filter)
                        #cached
                        .one()
                        .await
                }
            }
        }
    } else {
        let method = format_ident!("find_all_by_{}", field.ident);
        let doc = format!(
            "Every `{ident}` whose `{}` equals `value`, in id order.",
            field.ident
        );
        quote! {
            #[doc = #doc]
            fn #method(
                &self,
                value: #value,
            ) -> impl ::core::future::Future<
                Output = ::reposmith::__private::Result<::std::vec::Vec<#ident>>,
            > + ::core::marker::Send
            where
                Self: ::core::marker::Sized,
            {
                let filter = #ident::#column.eq(value);
                ::core::future::IntoFuture::into_future(
                    ::reposmith::__private::Repository::find(self, filter),
                )
            }
        }
    }
}

/// `search_<field>` per vector field, `search_<field>_by_text` per embedded
/// one, and `search_hybrid` (or `search_hybrid_<field>` when there are
/// several vector fields) when the entity also has a full-text document.
fn searches(entity: &Entity) -> TokenStream {
    let ident = &entity.ident;
    let vectors: Vec<&Field> = entity.columns().filter(|f| f.vector.is_some()).collect();
    let has_text = entity.columns().any(|f| f.full_text.is_some());
    let bound = quote! {
        where
            Self: ::reposmith::__private::VectorSearch<#ident> + ::core::marker::Sized
    };
    let mut out = TokenStream::new();
    for field in &vectors {
        let ty = &field.ty;
        let column = format_ident!("{}", crate::naming::column_const(&field.ident.to_string()));
        let scalar = quote!(<#ty as ::reposmith::__private::FieldType>::Scalar);
        let search = format_ident!("search_{}", field.ident);
        let doc = format!(
            "The `k` `{ident}`s whose `{}` is nearest `vector`, closest first; \
             add `.filter(..)`, `.max_distance(..)`, `.ef_search(..)` before awaiting.",
            field.ident
        );
        out.extend(quote! {
            #[doc = #doc]
            fn #search(
                &self,
                vector: impl ::core::convert::Into<#scalar>,
                k: u32,
            ) -> ::reposmith::__private::Search<'_, #ident, Self, ::reposmith::search::ByVector>
            #bound
            {
                ::reposmith::__private::VectorSearch::nearest(self, #ident::#column, vector.into(), k)
            }
        });
        if field.embed_from.is_some() {
            let by_text = format_ident!("search_{}_by_text", field.ident);
            let doc = format!(
                "The `k` `{ident}`s whose `{}` is nearest the embedding of `text`, \
                 computed by the repository's embedder.",
                field.ident
            );
            out.extend(quote! {
                #[doc = #doc]
                fn #by_text(
                    &self,
                    text: impl ::core::convert::Into<::std::string::String>,
                    k: u32,
                ) -> ::reposmith::__private::Search<'_, #ident, Self, ::reposmith::search::ByVector>
                #bound
                {
                    ::reposmith::__private::VectorSearch::nearest_to_text(self, #ident::#column, text, k)
                }
            });
        }
        if has_text {
            let hybrid = if vectors.len() == 1 {
                format_ident!("search_hybrid")
            } else {
                format_ident!("search_hybrid_{}", field.ident)
            };
            let doc = format!(
                "The `k` best `{ident}`s by full-text match of `text` and nearness of `{}` \
                 to `vector`, fused with reciprocal rank fusion by default \
                 (`.fusion(FusionMethod::Convex)` for a convex combination of normalised scores; \
                 `.weights(text, vector)`, `.rrf_k(n)` and `.candidates(n)` to tune).",
                field.ident
            );
            out.extend(quote! {
                #[doc = #doc]
                fn #hybrid(
                    &self,
                    text: impl ::core::convert::Into<::std::string::String>,
                    vector: impl ::core::convert::Into<#scalar>,
                    k: u32,
                ) -> ::reposmith::__private::Search<'_, #ident, Self, ::reposmith::search::Hybrid>
                #bound
                {
                    ::reposmith::__private::VectorSearch::hybrid(
                        self, text, #ident::#column, vector.into(), k,
                    )
                }
            });
        }
    }
    out
}
