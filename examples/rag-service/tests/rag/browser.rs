//! The search page end to end, in Debian's headless Chromium: the service
//! serves `GET /`, `tests/browser/search.mjs` (playwright-core) opens it
//! with the API key in the address, types a query, picks hybrid mode and
//! reads what the page shows; then searches with a wrong key and reads the
//! error. Screenshots of both are kept under `target/rag-e2e/browser/`
//! (`search.png`, `bad-key.png`; the path is printed).
//!
//! Needs `/usr/bin/chromium` and `tests/browser/node_modules`: `cargo
//! xtask test-tools` installs both, and this test fails naming it when
//! either is missing.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::Method;
use reposmith::testing::TestContext;
use reposmith_example_rag::config::ApiKey;
use serde_json::{Value, json};

use super::external::{self, CHROMIUM};
use super::support::{self, TestService};

/// The key the page is given; a second key shows that the page sends the
/// one typed in its field, not a fixed one.
const KEY: &str = "browser-test-key-1";

/// The longest the node script may take: Chromium starts in about a second
/// here, the searches take a few more.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The page the query should find.
const EXPECTED_SOURCE: &str = "https://www.postgresql.org/docs/16/sql-createindex.html";

/// A few pages of the PostgreSQL manual, paraphrased, and one whose title
/// and text are markup: the page must show it as text.
fn documents() -> Vec<Value> {
    vec![
        json!({
            "title": "CREATE INDEX",
            "source": EXPECTED_SOURCE,
            "text": "CREATE INDEX constructs an index on the specified column(s) of the \
                     specified relation. When the CONCURRENTLY option is used, PostgreSQL \
                     builds the index without taking any locks that prevent concurrent \
                     inserts, updates, or deletes on the table, whereas a standard index \
                     build locks out writes until it is done.",
        }),
        json!({
            "title": "Routine Vacuuming",
            "source": "https://www.postgresql.org/docs/16/routine-vacuuming.html",
            "text": "PostgreSQL databases require periodic maintenance known as vacuuming. \
                     VACUUM reclaims storage occupied by dead tuples, updates data \
                     statistics used by the query planner and protects against loss of \
                     very old data due to transaction ID wraparound.",
        }),
        json!({
            "title": "<img src=x onerror=\"document.title='owned'\"><b id=\"injected\">WAL</b>",
            "source": "javascript:document.title='owned'",
            "text": "<script>document.title='owned'</script> Continuous archiving keeps \
                     the write ahead log so that an index or a table can be recovered to \
                     any point in time.",
        }),
    ]
}

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn the_search_page_finds_an_ingested_page_in_chromium(ctx: TestContext) {
    let chromium = external::require(CHROMIUM, "Debian's Chromium");
    let project = external::crate_dir().join("tests/browser");
    external::require(
        project.join("node_modules/playwright-core/package.json"),
        "the browser test's npm packages (playwright-core)",
    );
    let artifacts = external::artifacts("browser");
    let screenshot = artifacts.join("search.png");

    let mut config = support::config(&ctx);
    config.api_keys = vec![ApiKey {
        name: "browser".to_owned(),
        key: KEY.to_owned(),
    }];
    let service = support::start_with(&ctx, config).await;
    ingest(&service).await;

    let mut node = Command::new("node");
    node.current_dir(&project)
        .arg("search.mjs")
        .args(["--url", &service.base_url])
        .args(["--key", KEY])
        .args(["--query", "build an index without locking writes"])
        .args(["--mode", "hybrid"])
        .arg("--screenshot")
        .arg(&screenshot)
        .arg("--error-screenshot")
        .arg(artifacts.join("bad-key.png"))
        .arg("--chromium")
        .arg(&chromium);
    let dir = artifacts.clone();
    let run = tokio::task::spawn_blocking(move || {
        external::run(node, &dir, "search.mjs", SCRIPT_TIMEOUT)
    })
    .await
    .expect("the script's thread");
    assert!(run.status.success(), "search.mjs failed\n{}", run.output());
    let seen: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("search.mjs printed no JSON ({e})\n{}", run.output()));
    println!(
        "browser: screenshot {} (script {:.1} s: {})",
        screenshot.display(),
        run.elapsed.as_secs_f64(),
        seen["timings"]
    );

    check_search(&seen);
    check_bad_key(&seen);
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    for state in [&seen["search"], &seen["bad_key"]] {
        assert_eq!(
            state["document_title"], "RAG search",
            "a document's markup ran: {state}"
        );
    }
    let size = std::fs::metadata(&screenshot).map_or(0, |m| m.len());
    assert!(size > 1_000, "no screenshot at {}", screenshot.display());
    service.stop().await;
}

/// What the page showed for the query: the expected page among the hits,
/// each hit with its score, the time taken, and only the page's own markup.
fn check_search(seen: &Value) {
    assert_eq!(seen["key_from_address"], true, "{seen}");
    assert_eq!(
        seen["address_keeps_key"], false,
        "the key stays in the address: {seen}"
    );
    let search = &seen["search"];
    assert_eq!(search["state"], "done", "{search}");
    assert_eq!(search["error"], Value::Null, "{search}");
    let results = search["results"].as_array().expect("results");
    // Only this page has every word of the query: first by full text,
    // so first after the fusion too, whatever the vectors say.
    let expected = results
        .first()
        .unwrap_or_else(|| panic!("no results: {search}"));
    assert_eq!(expected["source"], EXPECTED_SOURCE, "not first: {search}");
    assert_eq!(expected["title"], "CREATE INDEX", "{expected}");
    assert_eq!(expected["source_is_link"], true, "{expected}");
    assert!(
        expected["text"]
            .as_str()
            .is_some_and(|t| t.contains("CONCURRENTLY")),
        "{expected}"
    );
    for hit in results {
        let metric = hit["metric"].as_str().unwrap_or_default();
        assert!(
            metric.starts_with("score "),
            "hybrid hits show a score: {hit}"
        );
    }
    let status = search["status"].as_str().unwrap_or_default();
    assert!(
        status.starts_with(&format!("{} result", results.len()))
            && status.contains(" ms on the server"),
        "status line: {status:?}"
    );
    // Markup in a title, a source or a text is shown as text, never parsed.
    let tags: BTreeSet<&str> = search["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let allowed = BTreeSet::from(["a", "div", "li", "p", "span"]);
    assert!(tags.is_subset(&allowed), "tags from the data: {tags:?}");
    if let Some(markup) = results.iter().find(|hit| {
        hit["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("javascript:"))
    }) {
        assert_eq!(markup["source_is_link"], false, "{markup}");
        assert!(
            markup["title"]
                .as_str()
                .is_some_and(|t| t.contains("<b id=\"injected\">")),
            "{markup}"
        );
    }
}

/// What the page showed for a wrong key: the service's JSON error, readable.
fn check_bad_key(seen: &Value) {
    let bad = &seen["bad_key"];
    assert_eq!(bad["state"], "error", "{bad}");
    assert_eq!(bad["error"]["code"], "unauthorized", "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{bad}"
    );
    assert_eq!(bad["results"], json!([]), "{bad}");
}

/// Ingests [`documents`] with the key and waits until every one is embedded.
async fn ingest(service: &TestService) {
    let headers = [("content-type", "application/json"), ("x-api-key", KEY)];
    let mut ids = Vec::new();
    for document in documents() {
        let body = serde_json::to_vec(&document).expect("serializable");
        let reply = service
            .send(Method::POST, "/v1/documents", &headers, body)
            .await;
        assert_eq!(reply.status, 202, "{}", reply.json());
        ids.push(reply.json()["id"].as_str().expect("an id").to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids {
        loop {
            let path = format!("/v1/documents/{id}");
            let reply = service
                .send(Method::GET, &path, &[("x-api-key", KEY)], Vec::new())
                .await;
            assert_eq!(reply.status, 200, "{}", reply.json());
            if reply.json()["status"] == "ready" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not ready: {}",
                reply.json()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
