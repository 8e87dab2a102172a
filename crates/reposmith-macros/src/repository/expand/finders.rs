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
    quote! {
        #[doc = #doc]
        #vis trait #trait_ident: ::reposmith::__private::Repository<#ident> {
            #(#finders)*
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
        let doc = format!(
            "The `{ident}` whose `{}` equals `value`, if any.",
            field.ident
        );
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
                async move { ::reposmith::__private::Repository::find(self, filter).one().await }
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
