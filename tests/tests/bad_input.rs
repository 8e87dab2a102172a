//! Bad input, property-tested against the real servers (issue 17's rows B2
//! and S5): hostile filter values, JSON paths and orderings through the
//! typed filter API, the JSON corpus, the bind-size cap, identifier quoting
//! against the server's own `quote_ident`, and the SQL text of every
//! repository method searched for the values it was given.
//!
//! The property everywhere: an operation either returns a typed error
//! (`InvalidInput` naming the field and the reason, `TooLarge`) or runs and
//! returns the right answer; never a database syntax error, never a panic,
//! and no value ever in the SQL text. Case counts stay small enough for a
//! few seconds in CI, and grow under `REPOSMITH_HEAVY=1`.

#[path = "bad_input/bind_cap.rs"]
mod bind_cap;
#[path = "bad_input/filters.rs"]
mod filters;
#[path = "bad_input/json_corpus.rs"]
mod json_corpus;
#[path = "bad_input/quoting.rs"]
mod quoting;
#[path = "bad_input/review.rs"]
mod review;
#[path = "bad_input/statement_text.rs"]
mod statement_text;

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Cases of a property: `default` in CI, 2,000 under `REPOSMITH_HEAVY=1`.
pub(crate) fn runner(default: u32) -> TestRunner {
    let cases = if reposmith_tests::heavy() {
        2_000
    } else {
        default
    };
    TestRunner::new(Config {
        cases,
        // Cases run against a server: no regression files in the source tree.
        failure_persistence: None,
        ..Config::default()
    })
}

/// A runtime of the test's own: proptest's runner is synchronous, each case
/// blocks on its async body, and one thread keeps every tracing event of
/// the case on the thread whose subscriber captures it.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Pieces hostile to a query language: quotes, comment and statement
/// markers, LIKE wildcards and escapes, placeholders, NUL, MongoDB
/// operators as text, invisible and combining Unicode, the highest code
/// points. (A lone surrogate cannot be a Rust `String`; it can only come as
/// JSON text, which `json_corpus` tries.)
fn piece() -> impl Strategy<Value = String> {
    let fixed: Vec<&'static str> = vec![
        "'",
        "\"",
        "`",
        ";",
        "--",
        "/*",
        "*/",
        "\\",
        "%",
        "_",
        "$1",
        "$$",
        "$tag$",
        "\0",
        "?",
        "::text",
        "@>",
        "{\"$ne\": \"\"}",
        "$ne",
        "$where",
        "$gt",
        ".",
        "a.b",
        " ",
        "\n",
        "\t",
        "\r\n",
        "DROP TABLE docs",
        "' OR '1'='1",
        ") OR (1=1",
        "\u{FEFF}",
        "\u{200B}",
        "\u{202E}",
        "é",
        "e\u{301}",
        "İ",
        "ß",
        "🦀",
        "👩‍👩‍👧",
        "\u{FFFF}",
        "\u{10FFFF}",
        "NULL",
        "true",
        "v",
        "k",
        "w",
        "seed",
    ];
    prop_oneof![
        3 => proptest::sample::select(fixed).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => "[a-zA-Z0-9]{1,8}",
    ]
}

/// A hostile value: a few pieces, sometimes repeated past 10,000 characters.
pub(crate) fn hostile() -> impl Strategy<Value = String> {
    let short = || prop::collection::vec(piece(), 0..6).prop_map(|pieces| pieces.concat());
    prop_oneof![
        12 => short(),
        1 => short().prop_map(|s| {
            let unit = if s.is_empty() { "x".to_owned() } else { s };
            unit.repeat(10_000 / unit.chars().count() + 1)
        }),
    ]
}

/// The SQL texts sqlx logged (target `sqlx::query`, field `db.statement`:
/// each statement's text as sent), recorded raw rather than formatted, so
/// a quote or a newline in a value would show as itself.
#[derive(Clone, Default)]
pub(crate) struct Statements(Arc<Mutex<Vec<String>>>);

impl Statements {
    /// The texts logged since the last take.
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl<S: tracing::Subscriber> Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        /// Picks the statement's text out of an event's fields.
        struct Text<'a>(&'a mut Vec<String>);
        impl Visit for Text<'_> {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "db.statement" {
                    self.0.push(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "db.statement" {
                    self.0.push(format!("{value:?}"));
                }
            }
        }
        event.record(&mut Text(&mut self.0.lock().unwrap()));
    }
}

/// A subscriber for this thread capturing every statement text sqlx sends.
pub(crate) fn capture_statements() -> (Statements, tracing::subscriber::DefaultGuard) {
    let statements = Statements::default();
    let only_sqlx = Targets::new().with_target("sqlx::query", tracing::Level::TRACE);
    let subscriber = tracing_subscriber::registry().with(statements.clone().with_filter(only_sqlx));
    (statements, tracing::subscriber::set_default(subscriber))
}
