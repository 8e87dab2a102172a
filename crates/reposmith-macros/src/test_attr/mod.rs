//! `#[reposmith::test]`: options → checked model → a `#[test]` function
//! that runs the async body through `reposmith::testing::run`, in the same
//! three stages as the derive.

mod attr;
mod check;
mod expand;
#[cfg(test)]
mod tests;

use darling::FromMeta;
use darling::ast::NestedMeta;
use proc_macro2::TokenStream;
use quote::ToTokens;

/// The whole pipeline on token streams, unit-testable without the compiler.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let function = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            return tokens;
        }
    };
    let model = NestedMeta::parse_meta_list(args)
        .map_err(darling::Error::from)
        .and_then(|list| attr::TestOptions::from_list(&list))
        .and_then(|options| check::check(&options, &function));
    match model {
        Ok(model) => expand::expand(&model, &function),
        // One mistake, one error: the function itself stays as written (an
        // ordinary async fn), so its body adds no errors of its own.
        Err(errors) => {
            let mut tokens = errors.write_errors();
            tokens.extend(function.into_token_stream());
            tokens
        }
    }
}
