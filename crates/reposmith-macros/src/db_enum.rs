//! `#[derive(DbEnum)]`: a fieldless enum stored as text.
//!
//! Variants are stored under their snake_case names unless renamed with
//! `#[repo(rename = "...")]`; the schema lists them so migrations can add a
//! CHECK constraint.

use darling::util::SpannedValue;
use darling::{FromDeriveInput, FromVariant, ast};
use proc_macro2::TokenStream;
use quote::quote;
use syn::Ident;

use crate::naming;

#[derive(FromDeriveInput)]
#[darling(attributes(repo), supports(enum_unit))]
struct EnumInput {
    ident: Ident,
    data: ast::Data<EnumVariant, ()>,
}

#[derive(FromVariant)]
#[darling(attributes(repo))]
struct EnumVariant {
    ident: Ident,
    /// `rename = "..."`: the stored name.
    rename: Option<SpannedValue<String>>,
}

/// The whole pipeline on token streams.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<syn::DeriveInput>(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    match EnumInput::from_derive_input(&input).and_then(|e| check(&e).map(|names| (e, names))) {
        Ok((parsed, names)) => expand(&parsed, &names),
        Err(errors) => errors.write_errors(),
    }
}

/// Rule: stored names are non-empty and distinct, or reading them back would be ambiguous.
fn check(input: &EnumInput) -> darling::Result<Vec<String>> {
    let mut errors = darling::Error::accumulator();
    let variants = variants(input);
    let mut names: Vec<String> = Vec::new();
    for variant in variants {
        let name = stored_name(variant);
        let span = variant
            .rename
            .as_ref()
            .map_or(variant.ident.span(), |r| r.span());
        if name.is_empty() {
            errors.push(darling::Error::custom("the stored name is empty").with_span(&span));
        } else if names.contains(&name) {
            let message = format!("two variants are stored as `{name}`: rename one");
            errors.push(darling::Error::custom(message).with_span(&span));
        }
        names.push(name);
    }
    if variants.is_empty() {
        let message = "an enum without variants cannot be stored";
        errors.push(darling::Error::custom(message).with_span(&input.ident));
    }
    errors.finish_with(names)
}

fn variants(input: &EnumInput) -> &[EnumVariant] {
    match &input.data {
        ast::Data::Enum(variants) => variants,
        ast::Data::Struct(_) => &[],
    }
}

fn stored_name(variant: &EnumVariant) -> String {
    match &variant.rename {
        Some(rename) => rename.as_str().to_owned(),
        None => naming::variant_name(&variant.ident.to_string()),
    }
}

fn expand(input: &EnumInput, names: &[String]) -> TokenStream {
    let ident = &input.ident;
    let variants: Vec<&Ident> = variants(input).iter().map(|v| &v.ident).collect();
    let expected = format!("one of {}", names.join(", "));
    quote! {
        const _: () = {
            impl ::reposmith::__private::FieldType for #ident {
                const COLUMN_TYPE: ::reposmith::__private::ColumnType =
                    ::reposmith::__private::ColumnType::Enum(&[#(#names),*]);
                type Scalar = Self;

                fn to_value(&self) -> ::reposmith::__private::Value {
                    let name = match self { #(Self::#variants => #names),* };
                    ::reposmith::__private::Value::Text(::std::string::String::from(name))
                }

                fn from_value(
                    value: ::reposmith::__private::Value,
                ) -> ::core::result::Result<Self, ::reposmith::__private::DecodeError> {
                    match &value {
                        ::reposmith::__private::Value::Text(text) => match text.as_str() {
                            #(#names => ::core::result::Result::Ok(Self::#variants),)*
                            _ => ::core::result::Result::Err(::reposmith::__private::DecodeError {
                                expected: #expected,
                                found: ::std::format!("{text:?}"),
                            }),
                        },
                        other => ::core::result::Result::Err(
                            ::reposmith::__private::DecodeError::unexpected(#expected, other),
                        ),
                    }
                }
            }
        };
    }
}
