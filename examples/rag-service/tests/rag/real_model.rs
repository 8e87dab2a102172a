//! The service end to end with the real model on the real manual: eleven
//! pages of the PostgreSQL manual (179 paragraphs) ingested
//! through `POST /v1/documents`, chunked and embedded by the workers with
//! all-MiniLM-L6-v2, then searched by their titles in vector and hybrid
//! mode and asked about through `/v1/ask`.
//!
//! The model (`target/rag/model`, or `RAG_MODEL_DIR`) and the manual
//! (`target/rag/doc/...`, or `RAG_DOC_DIR`) are fetched by `cargo xtask
//! test-tools` (which `cargo xtask test` runs); without them this test
//! fails, saying so: it never skips.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reposmith::testing::TestContext;
use reposmith_example_rag::chunker::Chunker;
use reposmith_example_rag::corpus::{self, Corpus, Page};
use reposmith_example_rag::embed::{self, MiniLm};
use serde_json::{Value, json};

use super::support::{self, TestService};

/// The pages ingested: short and long ones, on different subjects (179
/// paragraphs; kept small, since each passage is a forward pass of the
/// model and the test must stay quick in the debug profile).
const PAGES: [&str; 11] = [
    "tutorial-window.html",
    "indexes-types.html",
    "wal-intro.html",
    "ddl-rowsecurity.html",
    "tablesample-method.html",
    "brin-intro.html",
    "gin-intro.html",
    "logical-replication.html",
    "mvcc-intro.html",
    "explicit-locking.html",
    "pgtrgm.html",
];

/// Title queries and the page each must find.
const TITLES: [(&str, &str); 6] = [
    ("Window Functions", "tutorial-window.html"),
    ("Index Types", "indexes-types.html"),
    ("Write-Ahead Logging (WAL)", "wal-intro.html"),
    ("Row Security Policies", "ddl-rowsecurity.html"),
    ("Writing a Table Sampling Method", "tablesample-method.html"),
    ("Explicit Locking", "explicit-locking.html"),
];

/// How far down the hits a title's own page must appear.
const TOP: usize = 3;

/// Every page embedded within this, on a busy two-core machine (43 s seen
/// there beside a full ingest of the manual; 96 s for twelve larger pages).
const EMBED_LIMIT: Duration = Duration::from_secs(240);

fn model() -> MiniLm {
    let dir = embed::model_dir();
    MiniLm::load(&dir).unwrap_or_else(|e| {
        panic!(
            "the RAG model is not in {}: {e}\nrun `cargo xtask test-tools` (or set RAG_MODEL_DIR)",
            dir.display()
        )
    })
}

/// The pages' passages as documents: (file, title, text), with the corpus'
/// passage rules applied.
fn documents() -> Vec<(String, String, String)> {
    let dir = corpus::doc_dir();
    let pages = PAGES.iter().map(|file| {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the PostgreSQL manual is not in {}: {e}\nrun `cargo xtask test-tools` (or set RAG_DOC_DIR)",
                dir.display()
            )
        });
        Page::parse(file, &text).expect("a manual page parses")
    });
    let corpus = Corpus::from_pages(pages);
    PAGES
        .iter()
        .map(|file| {
            let passages: Vec<&str> = corpus
                .passages
                .iter()
                .filter(|p| p.page == *file)
                .map(|p| p.text.as_str())
                .collect();
            assert!(!passages.is_empty(), "{file} has passages");
            let title = corpus
                .passages
                .iter()
                .find(|p| p.page == *file)
                .map(|p| p.title.clone());
            (
                (*file).to_owned(),
                title.unwrap_or_default(),
                passages.join("\n\n"),
            )
        })
        .collect()
}

async fn search(service: &TestService, query: &str, mode: &str) -> Vec<String> {
    let body = json!({"query": query, "mode": mode, "k": 10});
    let reply = service.post_json("/v1/search", &body).await;
    assert_eq!(reply.status, 200, "{body} -> {}", reply.json());
    reply.json()["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|hit| hit["source"].as_str().expect("a source").to_owned())
        .collect()
}

#[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
async fn the_real_model_finds_manual_pages_by_their_titles(ctx: TestContext) {
    let embedder = Arc::new(model());
    let service = support::start_with_embedder(&ctx, support::config(&ctx), embedder).await;
    let docs = documents();
    let paragraphs: usize = docs.iter().map(|(_, _, t)| t.split("\n\n").count()).sum();
    assert!((150..=300).contains(&paragraphs), "{paragraphs} paragraphs");

    let started = Instant::now();
    let mut ids = Vec::new();
    for (file, title, text) in &docs {
        let body = json!({"title": title, "source": file, "text": text});
        let reply = service.post_json("/v1/documents", &body).await;
        assert_eq!(reply.status, 202, "{file}: {}", reply.json());
        ids.push(reply.json()["id"].as_str().expect("an id").to_owned());
    }
    let mut passages = 0;
    for ((file, _, text), id) in docs.iter().zip(&ids) {
        let left = EMBED_LIMIT.saturating_sub(started.elapsed());
        let status: Value = service.wait_ready(id, left).await;
        // rag-load counts on it: the service splits with the default chunker.
        let expected = Chunker::default().split(text).len();
        assert_eq!(status["chunks"]["total"], expected, "{file}: {status}");
        assert_eq!(status["chunks"]["embedded"], expected, "{file}: {status}");
        passages += expected;
    }
    eprintln!(
        "real model: {paragraphs} paragraphs in {passages} passages embedded through the queue in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for mode in ["vector", "hybrid"] {
        for (title, page) in TITLES {
            let sources = search(&service, title, mode).await;
            assert!(
                sources.iter().take(TOP).any(|s| s == page),
                "{mode} {title:?}: {page} not in the top {TOP}: {sources:?}"
            );
        }
    }

    let reply = service
        .post_json(
            "/v1/ask",
            &json!({"question": "How can a table restrict which rows each user is allowed to see or modify?"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    let answer = reply.json();
    assert_eq!(
        answer["passages"][0]["source"], "ddl-rowsecurity.html",
        "{answer}"
    );
    let text = answer["answer"].as_str().expect("an answer");
    assert!(
        text.contains("[1]"),
        "the answer cites its first passage: {text}"
    );
    assert!(text.to_lowercase().contains("polic"), "{text}");
    service.stop().await;
}
