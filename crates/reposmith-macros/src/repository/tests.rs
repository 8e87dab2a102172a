//! Expansion snapshots: what the derive generates, formatted, so a codegen
//! change shows up as a reviewable diff (`INSTA_UPDATE=always` to accept).

use proc_macro2::TokenStream;
use quote::quote;

fn expand(input: TokenStream) -> String {
    let tokens = super::derive(input);
    let file = syn::parse2::<syn::File>(tokens).expect("the expansion parses as items");
    prettyplease::unparse(&file)
}

#[test]
fn full_entity() {
    insta::assert_snapshot!(expand(quote! {
        #[repo(table = "documents", schema = "rag")]
        pub struct Document {
            #[repo(id)]
            pub id: Uuid,
            #[repo(unique, column = "url")]
            pub source_url: String,
            #[repo(index)]
            pub title: String,
            pub summary: Option<String>,
            #[repo(json, index)]
            pub metadata: DocMeta,
            #[repo(default = "0")]
            pub views: i64,
            #[repo(skip)]
            pub score: f64,
            #[repo(version)]
            pub version: i64,
            #[repo(created_at)]
            pub created_at: DateTime<Utc>,
            #[repo(updated_at)]
            pub updated_at: DateTime<Utc>,
        }
    }));
}

#[test]
fn soft_delete_column_carries_its_role() {
    insta::assert_snapshot!(expand(quote! {
        pub struct Note {
            #[repo(id)]
            pub id: i64,
            #[repo(unique)]
            pub slug: String,
            #[repo(soft_delete)]
            pub deleted_at: Option<DateTime<Utc>>,
        }
    }));
}

#[test]
fn tenant_column_carries_its_role() {
    insta::assert_snapshot!(expand(quote! {
        pub struct Passage {
            #[repo(id)]
            pub id: i64,
            #[repo(tenant)]
            pub org: String,
            pub body: String,
        }
    }));
}

#[test]
fn identity_id_and_default_table() {
    insta::assert_snapshot!(expand(quote! {
        struct ChatMessage {
            #[repo(id)]
            id: i64,
            body: String,
        }
    }));
}

#[test]
fn small_identity_and_assigned_integer_ids() {
    let identity = expand(quote! {
        struct Seat {
            #[repo(id)]
            id: i32,
            label: String,
        }
    });
    let assigned = expand(quote! {
        #[repo(table = "levels")]
        struct Level {
            #[repo(id(assigned))]
            level: i16,
        }
    });
    insta::assert_snapshot!(format!("{identity}\n// ---\n\n{assigned}"));
}

#[test]
fn assigned_applies_to_integer_ids_only() {
    insta::assert_snapshot!(expand(quote! {
        struct Tenant {
            #[repo(id(assigned))]
            slug: String,
        }
    }));
}

#[test]
fn errors_are_collected_with_a_fallback_impl() {
    insta::assert_snapshot!(expand(quote! {
        #[repo(table = "")]
        struct Document {
            #[repo(version)]
            version: String,
            #[repo(unique, index)]
            url: String,
        }
    }));
}

#[test]
fn db_enum() {
    let tokens = crate::db_enum::derive(quote! {
        enum Status {
            Draft,
            #[repo(rename = "live")]
            Published,
        }
    });
    let file = syn::parse2::<syn::File>(tokens).expect("the expansion parses as items");
    insta::assert_snapshot!(prettyplease::unparse(&file));
}

#[test]
fn mongo_only_entity_on_its_collection() {
    insta::assert_snapshot!(expand(quote! {
        #[repo(backend = "mongo", collection = "llm_traces")]
        struct Trace {
            #[repo(id)]
            id: ObjectId,
            model: String,
        }
    }));
}

#[test]
fn vector_fields_name_their_kind_distance_and_index() {
    insta::assert_snapshot!(expand(quote! {
        #[repo(table = "chunks")]
        struct Chunk {
            #[repo(id)]
            id: Uuid,
            #[repo(full_text)]
            body: String,
            #[repo(vector(dims = 3, distance = "inner_product"), embed(from = "body"))]
            embedding: HalfVector,
            #[repo(vector(dims = 64, distance = "jaccard", index = "none"))]
            bits: Option<Bit>,
            #[repo(vector(dims = 3, distance = "l2", index = "ivfflat", lists = 8))]
            dense: Vector,
        }
    }));
}

#[test]
fn an_unknown_value_is_refused_at_the_value_with_a_suggestion() {
    let out = expand(quote! {
        #[repo(backend = "mongoo")]
        struct Trace {
            #[repo(id)]
            id: Uuid,
            #[repo(vector(dims = 3, distance = "cosin", index = "hnws"))]
            e: Vector,
        }
    });
    for expected in [
        "`backend`: ",
        "`mongo`",
        "`distance`: ",
        "`cosine`",
        "`hnsw`",
    ] {
        assert!(out.contains(expected), "no suggestion {expected} in {out}");
    }
}

#[test]
fn cached_entity_declares_its_cache_and_caches_unique_finders() {
    insta::assert_snapshot!(expand(quote! {
        #[repo(cache(ttl = "5m", negative_ttl = "30s"))]
        struct Account {
            #[repo(id)]
            id: Uuid,
            #[repo(unique)]
            email: String,
            #[repo(index)]
            team: String,
        }
    }));
}

#[test]
fn a_cache_without_negative_ttl_caches_no_absent_row() {
    let out = expand(quote! {
        #[repo(cache(ttl = "2h"))]
        struct Account {
            #[repo(id)]
            id: Uuid,
        }
    });
    let compact: String = out.split_whitespace().collect();
    let spec = "CacheSpec::new(7200000u64,0u64,0x";
    assert!(compact.contains(spec), "no {spec} in {out}");
}

#[test]
fn cache_mistakes_are_refused_with_the_reason() {
    let cases = [
        (r#"cache(ttl = "5 min")"#, "\"5 min\" is not a duration"),
        (
            r#"cache(ttl = "0s")"#,
            "a cache `ttl` of zero would cache nothing",
        ),
        (
            r#"cache(ttl = "5m", negative_ttl = "0m")"#,
            "a `negative_ttl` of zero",
        ),
        (r#"cache(ttl = "31d")"#, "it is at most 30 days"),
        (r#"cache(ttl = "5w")"#, "the cache `ttl` is 35 days"),
        (
            r#"cache(ttl = "5m", negative_ttl = "1h")"#,
            "an absent row must not outlive a found one",
        ),
        (
            r#"cache(ttl = "5m", negativ_ttl = "1s")"#,
            "Did you mean `negative_ttl`?",
        ),
        (r#"cache(negative_ttl = "5m")"#, "Missing field `ttl`"),
        (
            r#"cache(ttl = "5m"), cache(ttl = "1m")"#,
            "`cache(..)` is given twice",
        ),
    ];
    for (attr, expected) in cases {
        let attr: TokenStream = attr.parse().expect("tokens");
        let out = expand(quote! {
            #[repo(#attr)]
            struct Account {
                #[repo(id)]
                id: Uuid,
            }
        });
        // The messages sit in `compile_error!` string literals.
        let out = out.replace("\\\"", "\"");
        assert!(out.contains(expected), "{attr}: no {expected:?} in {out}");
        assert!(
            !out.contains("CacheSpec"),
            "{attr}: a spec despite the error"
        );
    }
}

#[test]
fn primary_reads_are_declared_on_the_schema() {
    // Stored in both backends: only its PostgreSQL repositories route by it.
    insta::assert_snapshot!(expand(quote! {
        #[repo(reads = "primary")]
        struct Ledger {
            #[repo(id)]
            id: i64,
            balance: i64,
        }
    }));
}

#[test]
fn replica_reads_are_the_default_and_emit_nothing() {
    let replica = expand(quote! {
        #[repo(backend = "postgres", reads = "replica")]
        struct Ledger {
            #[repo(id)]
            id: i64,
        }
    });
    let default = expand(quote! {
        #[repo(backend = "postgres")]
        struct Ledger {
            #[repo(id)]
            id: i64,
        }
    });
    assert_eq!(replica, default);
    assert!(!replica.contains("with_reads"), "{replica}");
}

#[test]
fn read_preference_mistakes_are_refused_with_the_reason() {
    let cases = [
        (
            r#"reads = "secondary""#,
            r#"unknown read preference "secondary": use "primary" or "replica""#,
        ),
        (r#"reads = 1"#, "`reads`: "),
        (
            r#"backend = "mongo", reads = "primary""#,
            "`reads` routes PostgreSQL reads between the primary and its replicas; MongoDB reads \
             follow the readPreference in MONGODB_URL",
        ),
    ];
    for (attr, expected) in cases {
        let attr: TokenStream = attr.parse().expect("tokens");
        let out = expand(quote! {
            #[repo(#attr)]
            struct Ledger {
                #[repo(id)]
                id: i64,
            }
        });
        // The messages sit in `compile_error!` string literals.
        let out = out.replace("\\\"", "\"");
        assert!(out.contains(expected), "{attr}: no {expected:?} in {out}");
        assert!(
            !out.contains("with_reads"),
            "{attr}: a preference despite the error"
        );
    }
}

/// Found by the `never_panics` property test: darling's `Flag` panicked on
/// an empty list. Every bare word written with one is an error on it.
#[test]
fn a_bare_word_with_an_empty_list_is_an_error_not_a_panic() {
    for word in [
        "unique",
        "index",
        "json",
        "version",
        "created_at",
        "updated_at",
        "soft_delete",
        "tenant",
        "skip",
    ] {
        let attr: TokenStream = format!("#[repo({word}())]").parse().unwrap();
        let output = super::derive(quote! {
            pub struct Document {
                #[repo(id)]
                pub id: Uuid,
                #attr
                pub version: i64,
            }
        })
        .to_string();
        assert!(output.contains("takes no arguments"), "{word}: {output}");
    }
    let output = super::derive(quote! {
        pub struct Document {
            #[repo(id(assigned()))]
            pub id: i64,
        }
    })
    .to_string();
    assert!(output.contains("`assigned` takes no arguments"), "{output}");
}

#[test]
fn references_declare_the_schema_relation_index_constant_and_checks() {
    insta::assert_snapshot!(expand(quote! {
        #[repo(table = "chunks")]
        pub struct Chunk {
            #[repo(id)]
            pub id: i64,
            #[repo(references(Document, on_delete = "cascade"))]
            pub document_id: Uuid,
            #[repo(references(Self, on_delete = "set_null"))]
            pub parent: Option<i64>,
            #[repo(references(Owner), unique)]
            pub owner_id: Uuid,
        }
    }));
}

#[test]
fn reference_mistakes_are_refused_with_the_reason() {
    let cases = [
        (
            quote!(#[repo(references(Document, on_delete = "nullify"))] doc_id: Uuid),
            "unknown `on_delete` action \"nullify\"",
        ),
        (
            quote!(#[repo(references(Document, cascade))] doc_id: Uuid),
            "unknown option in `references`: only `on_delete` is",
        ),
        (
            quote!(#[repo(references)] doc_id: Uuid),
            "`references` names the referenced entity",
        ),
        (
            quote!(#[repo(references(on_delete = "cascade"))] doc_id: Uuid),
            "`references` starts with the referenced entity",
        ),
        (
            quote!(#[repo(references(Document, on_delete = "set_null"))] doc_id: Uuid),
            "`on_delete = \"set_null\"` needs an `Option` field",
        ),
        (
            quote!(#[repo(references(Document), json)] doc_id: Uuid),
            "`references` applies to a plain field holding the referenced entity's id, not to a `json` field",
        ),
        (
            quote!(#[repo(references(Document))] document_id: Uuid, document: String),
            "the relation constant `DOCUMENT` of this reference is already the column constant of field `document`",
        ),
    ];
    for (fields, expected) in cases {
        let out = expand(quote! {
            struct Chunk {
                #[repo(id)]
                id: i64,
                #fields
            }
        });
        let out = out.replace("\\\"", "\"");
        assert!(out.contains(expected), "no {expected:?} in {out}");
    }
    let out = expand(quote! {
        #[repo(backend = "mongo")]
        struct Chunk {
            #[repo(id)]
            id: i64,
            #[repo(references(Document, on_delete = "cascade"))]
            doc_id: i64,
        }
    });
    assert!(out.contains("MongoDB has no foreign keys"), "{out}");
    let out = expand(quote! {
        #[repo(cache(ttl = "5m"))]
        struct Chunk {
            #[repo(id)]
            id: i64,
            #[repo(references(Document, on_delete = "cascade"))]
            doc_id: i64,
        }
    });
    let out = out.replace("\\\"", "\"");
    assert!(
        out.contains("a cached entity cannot have `on_delete = \"cascade\"`"),
        "{out}"
    );
}
