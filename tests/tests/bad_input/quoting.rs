//! Identifier quoting against the server's own `quote_ident`, for hostile
//! names: quotes, spaces, punctuation, keywords, upper case, non-ASCII.
//!
//! Names come from the schema (the derive), not from users, and the derive
//! refuses names that are empty, longer than 63 bytes or hold a control
//! character (NUL included), so the names generated here are exactly the
//! ones it admits. Two quoters render them: reposmith's `quote_ident`
//! (DDL, COPY, `insert_many`) and sea-query's (every other statement).
//!
//! The property, for each name `n`, with `q` = `SELECT quote_ident(n)` on
//! the server:
//! - both quoters give `q` exactly, or `q` is `n` itself (the server leaves a
//!   plain lower-case non-keyword unquoted) and both give `"n"`: the same
//!   identifier, since quoting a name that needs none does not change it;
//! - and the server reads each quoted form back as `n`: `SELECT 1 AS
//!   <quoted>` returns a column named exactly `n`.

use proptest::prelude::*;
use reposmith::postgres::sqlx::{self, AssertSqlSafe, Column, Row};
use reposmith::{PgBackend, PgConfig};
use sea_query::{Alias, PostgresQueryBuilder, Query};

use super::{runner, runtime};

/// A name the derive admits: 1 to 63 bytes, no control characters, built
/// from pieces hostile to quoting.
fn hostile_name() -> impl Strategy<Value = String> {
    let pieces: Vec<&'static str> = vec![
        "\"", "\"\"", "'", " ", ";", "--", "/*", ".", "$", "\\", "%", "?", "(", ")", ",", "select",
        "SELECT", "from", "user", "order", "Table", "end", "U&", "é", "ß", "İ", "Ω", "日本", "🦀",
        "\u{FEFF}", "\u{200B}", "_", "a", "Z", "9", "x1",
    ];
    let piece = prop_oneof![
        4 => proptest::sample::select(pieces).prop_map(str::to_owned),
        1 => any::<char>()
            .prop_filter("the derive refuses control characters", |c| !c.is_control())
            .prop_map(String::from),
    ];
    prop::collection::vec(piece, 1..8).prop_map(|pieces| {
        let mut name = String::new();
        for piece in pieces {
            if name.len() + piece.len() > 63 {
                break;
            }
            name.push_str(&piece);
        }
        if name.is_empty() {
            "a".to_owned()
        } else {
            name
        }
    })
}

/// sea-query's rendering of `name` as a column.
fn sea_quoted(name: &str) -> String {
    let sql = Query::select()
        .column(Alias::new(name))
        .to_string(PostgresQueryBuilder);
    sql.strip_prefix("SELECT ")
        .unwrap_or_else(|| panic!("unexpected sea-query text {sql:?}"))
        .to_owned()
}

/// The column name the server gives `SELECT 1 AS <quoted>`.
async fn read_back(pg: &PgBackend, quoted: &str) -> Result<String, String> {
    // Safe: `quoted` is the quoting under test, and refusing it is a test failure.
    let row = sqlx::query(AssertSqlSafe(format!("SELECT 1 AS {quoted}")))
        .fetch_one(pg.pool())
        .await
        .map_err(|e| format!("{quoted}: {e}"))?;
    Ok(row.columns()[0].name().to_owned())
}

async fn holds(pg: &PgBackend, name: &str) -> Result<(), TestCaseError> {
    let server: String = sqlx::query_scalar("SELECT quote_ident($1)")
        .bind(name)
        .fetch_one(pg.pool())
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let ours = reposmith_postgres::quote_ident(name);
    let sea = sea_quoted(name);
    for (quoter, quoted) in [("reposmith", &ours), ("sea-query", &sea)] {
        let same = *quoted == server || (server == name && *quoted == format!("\"{name}\""));
        prop_assert!(
            same,
            "{quoter} quoted {name:?} as {quoted}, the server as {server}"
        );
        let back = read_back(pg, quoted).await.map_err(TestCaseError::fail)?;
        prop_assert_eq!(&back, name, "{} read back", quoter);
    }
    let back = read_back(pg, &server).await.map_err(TestCaseError::fail)?;
    prop_assert_eq!(back, name, "the server's own quoting read back");
    Ok(())
}

#[test]
fn identifiers_are_quoted_as_the_servers_quote_ident() {
    let rt = runtime();
    let pg = rt
        .block_on(PgBackend::connect(&PgConfig::new(
            reposmith_tests::database_url(),
        )))
        .unwrap();
    let named = [
        "docs", "Docs", "select", "a\"b", "\"", "a b", "日本", "x;--", "U&\"x\"",
    ];
    for name in named {
        rt.block_on(holds(&pg, name))
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
    let mut runner = runner(256);
    let result = runner.run(&hostile_name(), |name| rt.block_on(holds(&pg, &name)));
    rt.block_on(pg.close());
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} hostile identifiers: reposmith's and sea-query's quoting equal the server's quote_ident and read back exactly",
        named.len() as u32 + runner.config().cases
    );
}
