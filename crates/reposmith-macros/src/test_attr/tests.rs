//! The pipeline on tokens: the expansion of a full set of options, and
//! every rule's error collected at once.

use quote::quote;

use super::attribute;

fn expand(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
    let file = syn::parse2::<syn::File>(attribute(args, item)).expect("valid Rust");
    prettyplease::unparse(&file)
}

#[test]
fn expands_every_option() {
    let out = expand(
        quote!(
            migrations = "migrations/app",
            fixtures("users.sql", "traces.json"),
            backends(postgres, redis),
            pool_size = 3,
            flavor = "multi_thread"
        ),
        quote! {
            /// Docs stay.
            #[ignore]
            async fn writes(ctx: TestContext) -> Result<(), Error> { Ok(()) }
        },
    );
    insta::assert_snapshot!(out);
}

#[test]
fn defaults() {
    let out = expand(
        quote!(),
        quote!(
            async fn plain(store: Store) {}
        ),
    );
    assert!(out.contains("Migrations::Default"), "{out}");
    assert!(
        out.contains("backends: ::core::option::Option::None"),
        "{out}"
    );
    assert!(out.contains("Flavor::CurrentThread"), "{out}");
}

#[test]
fn every_mistake_is_reported_together() {
    let out = attribute(
        quote!(
            migrations = true,
            fixtures("a.txt", "b.sql", "b.sql"),
            backends(postgres, mysql),
            pool_size = 0,
            flavor = "threaded"
        ),
        quote!(
            fn not_async(a: i32, b: i32) {}
        ),
    )
    .to_string();
    for expected in [
        "is the default",
        "neither `.sql`",
        "listed twice",
        "unknown backend `mysql`",
        "at least 1",
        "unknown flavor",
        "`async fn`",
        "takes one argument",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in {out}");
    }
}

#[test]
fn unknown_keys_are_refused_with_a_suggestion() {
    let out = attribute(
        quote!(pool = 3),
        quote!(
            async fn t(s: Store) {}
        ),
    )
    .to_string();
    assert!(out.contains("Unknown field: `pool`"), "{out}");
    assert!(out.contains("pool_size"), "{out}");
}
