//! Both derives fed arbitrary tokens: random identifiers, literals,
//! punctuation and nested groups, inside and around `#[repo(...)]`
//! attributes on the struct and its fields, and token-level mutations of
//! attributes that are valid. Whatever comes in, the derive returns items
//! (its expansion, or `compile_error!`s with the fallback impls) and never
//! panics: a panicking proc macro shows the user "proc-macro derive
//! panicked" with no span instead of an error on their attribute.
//!
//! 512 cases per property by default; `REPOSMITH_HEAVY=1` runs 20,000.

use std::str::FromStr;

use proc_macro2::TokenStream;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Cases per property: bounded for every CI run, many more when asked.
fn cases() -> u32 {
    match std::env::var("REPOSMITH_HEAVY").is_ok_and(|v| v == "1") {
        true => 20_000,
        false => 512,
    }
}

/// The words the derives' attributes and type checks know, and some they do not.
const WORDS: &[&str] = &[
    "repo",
    "table",
    "schema",
    "backend",
    "collection",
    "cache",
    "ttl",
    "negative_ttl",
    "reads",
    "id",
    "assigned",
    "column",
    "unique",
    "index",
    "json",
    "version",
    "created_at",
    "updated_at",
    "soft_delete",
    "tenant",
    "skip",
    "default",
    "vector",
    "dims",
    "distance",
    "m",
    "ef_construction",
    "lists",
    "full_text",
    "language",
    "embed",
    "from",
    "renamed_from",
    "rename",
    "Option",
    "Vec",
    "String",
    "i64",
    "i32",
    "i16",
    "u64",
    "f32",
    "f64",
    "bool",
    "Uuid",
    "ObjectId",
    "DateTime",
    "Utc",
    "NaiveDate",
    "Vector",
    "HalfVector",
    "SparseVector",
    "Bit",
    "serde_json",
    "Value",
    "self",
    "Self",
    "crate",
    "super",
    "r#type",
    "r#struct",
    "_",
    "tabel",
    "uniq",
];

/// String contents: the attributes' vocabularies, durations, SQL, hostile text.
const STRINGS: &[&str] = &[
    "",
    "postgres",
    "mongo",
    "both",
    "replica",
    "primary",
    "cosine",
    "l2",
    "inner_product",
    "hamming",
    "jaccard",
    "hnsw",
    "ivfflat",
    "none",
    "english",
    "5m",
    "30s",
    "0s",
    "1h",
    "-1s",
    "99999999999999999999h",
    "now()",
    "0",
    "docs",
    "rag",
    "a b",
    "x\"; DROP TABLE t; --",
    "\\0",
    "\u{0}",
    "é",
    "🦀",
    "$ne",
    "a.b",
    "_id",
];

const PUNCT: &[&str] = &[
    "=", ",", ":", ";", "::", "#", "!", ".", "..", "-", "+", "*", "&", "|", "<", ">", "?", "@",
    "$", "'a", "->", "=>", "==",
];

/// A literal of any kind, valid or not for where it lands.
fn literal() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(STRINGS).prop_map(|s| format!("{s:?}")),
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        prop::sample::select(
            &[
                "0",
                "1",
                "16",
                "2000",
                "2001",
                "4000",
                "65535",
                "4294967295",
                "4294967296",
                "1_000",
                "0x10",
                "1u8",
                "1.5",
                "1e400",
                "-1",
                "99999999999999999999999999",
            ][..]
        )
        .prop_map(str::to_owned),
        prop::sample::select(
            &[
                "true", "false", "'x'", "b\"x\"", "b'x'", "r\"raw\"", "c\"c\""
            ][..]
        )
        .prop_map(str::to_owned),
    ]
}

/// One token tree, groups nested up to `depth`.
fn tree(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => "[a-z_][a-z0-9_]{0,6}".prop_map(|s| match s.as_str() {
            "_" => "__".to_owned(),
            _ => s,
        }),
        3 => literal(),
        2 => prop::sample::select(PUNCT).prop_map(str::to_owned),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        4 => leaf,
        1 => (
            prop::sample::select(&[("(", ")"), ("[", "]"), ("{", "}")][..]),
            prop::collection::vec(tree(depth - 1), 0..6),
        )
            .prop_map(|((open, close), inner)| format!("{open}{}{close}", inner.join(" "))),
    ]
    .boxed()
}

/// A run of token trees.
fn tokens() -> impl Strategy<Value = String> {
    prop::collection::vec(tree(3), 0..10).prop_map(|t| t.join(" "))
}

/// Attribute arguments that are valid, on the struct and on a field.
const VALID_STRUCT_ARGS: &[&str] = &[
    "table = \"documents\", schema = \"rag\"",
    "backend = \"mongo\", collection = \"docs\"",
    "cache(ttl = \"5m\", negative_ttl = \"30s\")",
    "reads = \"primary\"",
];
const VALID_FIELD_ARGS: &[&str] = &[
    "id",
    "id(assigned)",
    "unique, column = \"url\"",
    "json, index",
    "default = \"0\"",
    "version",
    "created_at",
    "skip",
    "vector(dims = 3, distance = \"cosine\", index = \"hnsw\", m = 16, ef_construction = 64)",
    "full_text(language = \"english\")",
    "embed(from = \"body\")",
    "renamed_from = \"old\"",
    "ttl = \"1h\"",
];

/// A valid attribute's arguments with some tokens dropped, repeated,
/// replaced or inserted.
fn mutated(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(valid),
        prop::collection::vec((0..4u8, any::<prop::sample::Index>(), tree(1)), 0..4),
    )
        .prop_map(|(args, edits)| {
            let mut parts: Vec<String> = TokenStream::from_str(args)
                .expect("a valid attribute lexes")
                .into_iter()
                .map(|t| t.to_string())
                .collect();
            for (kind, at, token) in edits {
                let i = at.index(parts.len() + 1);
                match kind {
                    0 if i < parts.len() => drop(parts.remove(i)),
                    1 if i < parts.len() => parts.insert(i, parts[i].clone()),
                    2 if i < parts.len() => parts[i] = token,
                    _ => parts.insert(i.min(parts.len()), token),
                }
            }
            parts.join(" ")
        })
}

/// `#[repo(...)]` holding valid, mutated or arbitrary arguments, or an
/// attribute of another shape.
fn attribute(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(valid).prop_map(|a| format!("#[repo({a})]")),
        4 => mutated(valid).prop_map(|a| format!("#[repo({a})]")),
        3 => tokens().prop_map(|a| format!("#[repo({a})]")),
        1 => tree(1).prop_map(|t| format!("#[repo = {t}]")),
        1 => Just("#[repo]".to_owned()),
        1 => tokens().prop_map(|a| format!("#[repo[{a}]]")),
        1 => tokens().prop_map(|a| format!("#[serde({a})]")),
    ]
}

const TYPES: &[&str] = &[
    "Uuid",
    "ObjectId",
    "i64",
    "i32",
    "i16",
    "u32",
    "String",
    "Option<String>",
    "Option<i64>",
    "Vec<String>",
    "Vec<Vec<i32>>",
    "f32",
    "f64",
    "bool",
    "DateTime<Utc>",
    "NaiveDate",
    "serde_json::Value",
    "Option<serde_json::Value>",
    "pgvector::Vector",
    "HalfVector",
    "SparseVector",
    "Bit",
    "Option<Vector>",
    "Status",
    "(i32, i32)",
    "[u8; 4]",
    "&'a str",
    "Box<dyn Fn()>",
    "Option<Option<i64>>",
];

/// A field: attributes, a name, a type that is usually plausible.
fn field() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(attribute(VALID_FIELD_ARGS), 0..3),
        prop::sample::select(
            &[
                "id",
                "title",
                "body",
                "created_at",
                "embedding",
                "r#type",
                "x",
            ][..],
        ),
        prop_oneof![4 => prop::sample::select(TYPES).prop_map(str::to_owned), 1 => tokens()],
    )
        .prop_map(|(attrs, name, ty)| format!("{} pub {name}: {ty},", attrs.join(" ")))
}

/// Whole fields that are valid, so that a good share of the inputs
/// expand and the expansion's own code runs on what the mutations leave.
const VALID_FIELDS: &[&str] = &[
    "#[repo(unique, column = \"url\")] pub source_url: String,",
    "#[repo(index)] pub title: String,",
    "pub summary: Option<String>,",
    "#[repo(json, index)] pub meta: serde_json::Value,",
    "#[repo(default = \"0\")] pub views: i64,",
    "#[repo(skip)] pub score: f64,",
    "#[repo(version)] pub version: i64,",
    "#[repo(created_at)] pub created_at: DateTime<Utc>,",
    "#[repo(updated_at)] pub updated_at: DateTime<Utc>,",
    "#[repo(soft_delete)] pub deleted_at: Option<DateTime<Utc>>,",
    "#[repo(tenant)] pub org: String,",
    "pub tags: Vec<String>,",
    "#[repo(vector(dims = 3, distance = \"cosine\"))] pub embedding: Vector,",
    "#[repo(full_text(language = \"english\"))] pub body: String,",
];

/// A struct to derive on, mostly well-formed, with arbitrary attributes;
/// now and then generic, a tuple struct, an enum, or tokens of any shape.
fn repository_input() -> impl Strategy<Value = String> {
    let any_field = prop_oneof![
        2 => prop::sample::select(VALID_FIELDS).prop_map(str::to_owned),
        1 => field(),
    ];
    let named = (
        prop::collection::vec(attribute(VALID_STRUCT_ARGS), 0..3),
        prop::sample::select(&["", "", "", "<T>", "<'a>", "<const N: usize>"][..]),
        prop_oneof![
            3 => Just("#[repo(id)] pub id: Uuid,".to_owned()),
            1 => Just("#[repo(id)] pub id: i64,".to_owned()),
            1 => field(),
        ],
        prop::collection::vec(any_field, 0..6),
    )
        .prop_map(|(attrs, generics, id, fields)| {
            format!(
                "{} pub struct Document{generics} {{ {id} {} }}",
                attrs.join(" "),
                fields.concat()
            )
        });
    prop_oneof![
        8 => named,
        1 => (prop::collection::vec(attribute(VALID_STRUCT_ARGS), 0..2), tokens())
            .prop_map(|(attrs, body)| format!("{} struct T({body});", attrs.join(" "))),
        1 => tokens().prop_map(|body| format!("enum E {{ {body} }}")),
        1 => tokens(),
    ]
}

/// An enum for `DbEnum`, with `#[repo(rename = ...)]`-style variant attributes.
fn db_enum_input() -> impl Strategy<Value = String> {
    let variant = (
        prop::collection::vec(
            prop_oneof![
                literal().prop_map(|l| format!("#[repo(rename = {l})]")),
                tokens().prop_map(|a| format!("#[repo({a})]")),
            ],
            0..2,
        ),
        prop::sample::select(&["Draft", "Live", "draft", "A", "B", "R#type"][..]),
        prop::sample::select(&["", "(i32)", " { x: i32 }", " = 3"][..]),
    )
        .prop_map(|(attrs, name, body)| format!("{} {name}{body},", attrs.join(" ")));
    (
        prop::collection::vec(attribute(&["rename_all = \"snake\""]), 0..2),
        prop::collection::vec(variant, 0..5),
    )
        .prop_map(|(attrs, variants)| {
            format!(
                "{} enum Status {{ {} }}",
                attrs.join(" "),
                variants.concat()
            )
        })
}

/// Runs `derive` on every input `strategy` makes that lexes: its output must
/// parse as items. Returns how many inputs the derive refused with errors.
fn check(strategy: impl Strategy<Value = String>, derive: fn(TokenStream) -> TokenStream) -> u32 {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let refused = std::cell::Cell::new(0);
    let expanded = std::cell::Cell::new(0);
    let outcome = runner.run(&strategy, |source| {
        // Inputs come from tokens and always lex, except where a random
        // literal is not one (`'a` after a quote, say): those are skipped.
        let Ok(input) = TokenStream::from_str(&source) else {
            return Ok(());
        };
        let output = derive(input).to_string();
        let items = syn::parse_str::<syn::File>(&output);
        prop_assert!(items.is_ok(), "not items: {output}");
        match output.contains("compile_error") {
            true => refused.set(refused.get() + 1),
            false => expanded.set(expanded.get() + 1),
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // Inputs that all fail (or all pass) would leave half the derive unexercised.
    assert!(
        refused.get() > 0 && expanded.get() > 0,
        "{} refused, {} expanded",
        refused.get(),
        expanded.get()
    );
    refused.get()
}

#[test]
fn repository_derive_returns_items_for_arbitrary_attributes() {
    let refused = check(repository_input(), crate::repository::derive);
    eprintln!(
        "{} arbitrary inputs to derive(Repository): no panic, all items, {refused} refused with compile errors",
        cases()
    );
}

#[test]
fn db_enum_derive_returns_items_for_arbitrary_attributes() {
    let refused = check(db_enum_input(), crate::db_enum::derive);
    eprintln!(
        "{} arbitrary inputs to derive(DbEnum): no panic, all items, {refused} refused with compile errors",
        cases()
    );
}
