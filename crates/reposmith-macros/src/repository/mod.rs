//! `#[derive(Repository)]`: attributes → checked model → generated code.

mod attr;
mod backend_rules;
mod cache_rules;
mod check;
mod expand;
mod kinds;
mod lenient;
mod model;
mod relation_rules;
mod search_rules;
mod shape;
mod types;

#[cfg(test)]
mod tests;

use darling::FromDeriveInput;
use proc_macro2::TokenStream;

/// The whole pipeline on token streams, so it is unit-testable without the compiler.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let shape = shape::shape(&input);
    let model =
        attr::RepoInput::from_derive_input(&input).and_then(|attrs| check::check(&attrs, shape));
    match model {
        Ok(entity) => expand::expand(&entity),
        // A generic struct cannot take the non-generic fallback impl.
        Err(errors) if !input.generics.params.is_empty() => errors.write_errors(),
        Err(errors) => {
            let mut tokens = expand::fallback(&input.ident, errors.write_errors());
            tokens.extend(expand::fallback_api(&lenient::entity(&input)));
            tokens
        }
    }
}
