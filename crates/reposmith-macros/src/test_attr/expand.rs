//! Stage 3: the `#[test]` function. It keeps the user's other attributes
//! (`#[ignore]`, `#[should_panic]`, docs), nests the async body as an inner
//! function of the same name and hands it to `reposmith::testing::run`,
//! naming only `::reposmith::__private::test` and `::core`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use super::check::TestModel;

/// The test function for `function` with `model`'s options.
pub(crate) fn expand(model: &TestModel, function: &ItemFn) -> TokenStream {
    let ItemFn {
        attrs, vis, sig, ..
    } = function;
    // The body as an inner async fn, without the attributes (they belong to
    // the test) or the visibility.
    let inner = ItemFn {
        attrs: Vec::new(),
        vis: syn::Visibility::Inherited,
        ..function.clone()
    };
    let name = &sig.ident;
    let name_str = name.to_string();
    let args = test_args(model, &name_str);
    quote! {
        #(#attrs)*
        #[::core::prelude::v1::test]
        #vis fn #name() {
            #inner
            ::reposmith::__private::test::run(#args, #name)
        }
    }
}

/// The `TestArgs` literal.
fn test_args(model: &TestModel, name: &str) -> TokenStream {
    let private = quote!(::reposmith::__private::test);
    let migrations = match &model.migrations {
        None => quote!(#private::Migrations::Default),
        Some(None) => quote!(#private::Migrations::Off),
        Some(Some(path)) => quote!(#private::Migrations::Path(#path)),
    };
    let fixtures = &model.fixtures;
    let backends = match &model.backends {
        None => quote!(::core::option::Option::None),
        Some(names) => {
            let variants = names.iter().map(|n| match *n {
                "postgres" => quote!(#private::Backend::Postgres),
                "mongo" => quote!(#private::Backend::Mongo),
                _ => quote!(#private::Backend::Redis),
            });
            quote!(::core::option::Option::Some(&[#(#variants),*]))
        }
    };
    let pool_size = match model.pool_size {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let flavor = match model.multi_thread {
        true => quote!(#private::Flavor::MultiThread),
        false => quote!(#private::Flavor::CurrentThread),
    };
    quote! {
        #private::TestArgs {
            name: ::core::concat!(::core::module_path!(), "::", #name),
            manifest_dir: ::core::env!("CARGO_MANIFEST_DIR"),
            migrations: #migrations,
            fixtures: &[#(#fixtures),*],
            backends: #backends,
            pool_size: #pool_size,
            flavor: #flavor,
        }
    }
}
