//! The shape hash `#[repo(cache(..))]` puts in every cache key: a 64-bit
//! hash of the struct as stored, so that a build whose struct changed never
//! decodes an entry an older build wrote (a reader of the old shape and one
//! of the new shape simply use different keys).
//!
//! The hashed text is canonical: the entity name; the struct's own
//! `#[repo(..)]` items but `cache(..)` and `reads` (where the rows live: two
//! entities of one name over different tables must not share entries, while
//! a new ttl, or reads moved between the primary and its replicas, reads the
//! old entries well); then per field in declaration order its
//! name, its type's tokens as written and its `#[repo(..)]` attributes'
//! tokens. It is built from tokens, never from
//! source text, so whitespace and comments change nothing, while renaming,
//! retyping, re-attributing or reordering a field changes the hash. Doc
//! comments, visibility and other attributes are not part of the stored
//! shape and are left out. A change inside a type the struct names (a
//! `#[repo(json)]` payload, a `DbEnum`) is not visible to the derive.
//!
//! The hash is FNV-1a, written out below rather than taken from a crate: it
//! must give the same value for the same struct on every platform, build
//! and compiler version (std's `DefaultHasher` promises none of that), it
//! guards against accidental change rather than an adversary (the struct is
//! the application's own code), and it is six lines.

use std::fmt::Write as _;

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::{Data, DeriveInput, Meta, Token};

/// The shape hash of `input`.
pub(crate) fn shape(input: &DeriveInput) -> u64 {
    fnv1a(canonical(input).as_bytes())
}

/// The canonical text of `input` the shape hash is taken over: a line
/// naming the entity, one with its `#[repo(..)]` items, one per field.
pub(crate) fn canonical(input: &DeriveInput) -> String {
    let mut text = format!("entity {}\nstruct", input.ident);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repo")) {
        match attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
            Ok(items) => {
                let counts =
                    |item: &&Meta| !item.path().is_ident("cache") && !item.path().is_ident("reads");
                for item in items.iter().filter(counts) {
                    text.push_str(" #");
                    write_tokens(&mut text, item.to_token_stream());
                }
            }
            // darling reports the attribute; the crate does not compile.
            Err(_) => write_tokens(&mut text, attr.meta.to_token_stream()),
        }
    }
    text.push('\n');
    let Data::Struct(data) = &input.data else {
        return text;
    };
    for field in &data.fields {
        text.push_str("field");
        if let Some(ident) = &field.ident {
            text.push(' ');
            text.push_str(&ident.to_string());
        }
        text.push_str(" :");
        write_tokens(&mut text, field.ty.to_token_stream());
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("repo")) {
            text.push_str(" #");
            write_tokens(&mut text, attr.meta.to_token_stream());
        }
        text.push('\n');
    }
    text
}

/// Appends `tokens`, each preceded by one space. A punctuation character is
/// written without its spacing (`>>` and `> >` close the same generics), a
/// literal as the escaped, quoted text of the literal as written (so no
/// literal reads like an identifier or breaks a line), and an invisible
/// group (a type a `macro_rules!` passed in) as its contents.
fn write_tokens(text: &mut String, tokens: TokenStream) {
    for tree in tokens {
        match tree {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ('(', ')'),
                    Delimiter::Brace => ('{', '}'),
                    Delimiter::Bracket => ('[', ']'),
                    Delimiter::None => {
                        write_tokens(text, group.stream());
                        continue;
                    }
                };
                text.push(' ');
                text.push(open);
                write_tokens(text, group.stream());
                text.push(' ');
                text.push(close);
            }
            TokenTree::Ident(ident) => {
                text.push(' ');
                text.push_str(&ident.to_string());
            }
            TokenTree::Punct(punct) => {
                text.push(' ');
                text.push(punct.as_char());
            }
            TokenTree::Literal(literal) => {
                // Writing to a String cannot fail.
                let _ = write!(text, " {:?}", literal.to_string());
            }
        }
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::{canonical, fnv1a, shape};

    fn parse(source: &str) -> syn::DeriveInput {
        syn::parse_str(source).expect("a struct")
    }

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    const BASE: &str = r#"
        #[repo(table = "docs", cache(ttl = "5m"))]
        pub struct Document {
            #[repo(id)]
            pub id: Uuid,
            #[repo(unique, column = "url")]
            pub source_url: String,
            pub tags: Vec<Vec<u8>>,
        }
    "#;

    #[test]
    fn the_canonical_text_names_fields_types_and_repo_attributes() {
        let text = canonical(&parse(BASE));
        assert_eq!(
            text,
            "entity Document\n\
             struct # table = \"\\\"docs\\\"\"\n\
             field id : Uuid # repo ( id )\n\
             field source_url : String # repo ( unique , column = \"\\\"url\\\"\" )\n\
             field tags : Vec < Vec < u8 > >\n"
        );
    }

    #[test]
    fn whitespace_comments_docs_visibility_other_attributes_the_ttl_and_reads_do_not_count() {
        let same = r#"
            /// A document.
            #[derive(Debug)]
            #[repo(table="docs",cache(ttl="1h",negative_ttl="1m"),reads="primary")]
            struct Document {
                // the key
                #[repo( id )] id : Uuid ,
                /// Where it came from.
                #[serde(rename = "u")]
                #[repo(unique,column="url")]
                source_url: String,
                tags: Vec<Vec<u8> >,
            }
        "#;
        assert_eq!(shape(&parse(same)), shape(&parse(BASE)));
    }

    #[test]
    fn any_change_to_a_stored_field_changes_the_shape() {
        let base = shape(&parse(BASE));
        let changed = [
            // A field's type.
            BASE.replace("Vec<Vec<u8>>", "Vec<Vec<i16>>"),
            // A field's name.
            BASE.replace("source_url", "url"),
            // A field's attributes.
            BASE.replace("column = \"url\"", "column = \"link\""),
            BASE.replace("#[repo(unique, column = \"url\")]", "#[repo(column = \"url\")]"),
            BASE.replace("pub tags", "#[repo(json)] pub tags"),
            // The entity's name.
            BASE.replace("Document", "Doc"),
            // Where its rows live.
            BASE.replace("table = \"docs\"", "table = \"docs\", schema = \"archive\""),
            BASE.replace("table = \"docs\"", "table = \"documents\""),
            // Field order.
            BASE.replace(
                "#[repo(id)]\n            pub id: Uuid,\n            #[repo(unique, column = \"url\")]\n            pub source_url: String,",
                "#[repo(unique, column = \"url\")]\n            pub source_url: String,\n            #[repo(id)]\n            pub id: Uuid,",
            ),
        ];
        for source in changed {
            assert_ne!(source, BASE, "the replacement applied");
            assert_ne!(shape(&parse(&source)), base, "{source}");
        }
    }
}
