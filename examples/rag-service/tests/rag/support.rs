//! Starting the service for a test: on `127.0.0.1:0`, against the test's
//! own PostgreSQL database, MongoDB database and Redis key prefix (from
//! `#[reposmith::test]`), with the deterministic 384-dimension
//! `TestEmbedder` (or, for `real_model.rs`, the model); and a small HTTP/1
//! client over a real socket.
//!
//! ```ignore
//! #[reposmith::test(migrations = "../../migrations/rag", flavor = "multi_thread")]
//! async fn page_searches(ctx: TestContext) {
//!     let service = support::start(&ctx).await;
//!     let reply = service.post_json("/v1/search", &json!({"query": "x"})).await;
//!     // ... service.base_url for a browser ...
//!     service.stop().await;
//! }
//! ```

#![allow(dead_code, reason = "each test module uses part of the support")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use reposmith::prelude::*;
use reposmith::testing::{TestContext, TestEmbedder};
use reposmith::{BoxFuture, EmbedError, Embedder};
use reposmith_example_rag::answer::{Extractive, Generator};
use reposmith_example_rag::app::{AppState, Service};
use reposmith_example_rag::config::Config;
use reposmith_example_rag::domain::{ChatMessage, ChatSession, Chunk, Document, EMBEDDING_DIMS};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The migrations every test of this crate runs on (relative to the crate).
pub(crate) const MIGRATIONS: &str = "../../migrations/rag";

/// The longest a test request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A running service and a client for it.
pub(crate) struct TestService {
    /// `http://127.0.0.1:<port>`.
    pub(crate) base_url: String,
    /// The socket address.
    pub(crate) addr: SocketAddr,
    /// The service's state (its store, limiter, settings).
    pub(crate) state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Settings for a test: the test's Redis key prefix for the limiter and
/// the queues, limits high enough not to get in the way, short timeouts.
pub(crate) fn config(ctx: &TestContext) -> Config {
    Config {
        redis_prefix: ctx.key_prefix().to_owned(),
        requests_per_minute: 100_000,
        tokens_per_minute: 10_000_000,
        request_timeout: Duration::from_secs(20),
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    }
}

/// The service with [`config`], started on `127.0.0.1:0`.
pub(crate) async fn start(ctx: &TestContext) -> TestService {
    start_with(ctx, config(ctx)).await
}

/// The service with `config` (its `addr` is ignored: a free port is taken).
pub(crate) async fn start_with(ctx: &TestContext, config: Config) -> TestService {
    start_with_generator(ctx, config, Arc::new(Extractive::default())).await
}

/// The service with `config` and an application's answer generator.
pub(crate) async fn start_with_generator(
    ctx: &TestContext,
    config: Config,
    generator: Arc<dyn Generator>,
) -> TestService {
    let embedder = Arc::new(TestEmbedder::new(EMBEDDING_DIMS).expect("384 dims"));
    start_with_parts(ctx, config, embedder, generator).await
}

/// The service with `config` and a real embedder (the model).
pub(crate) async fn start_with_embedder(
    ctx: &TestContext,
    config: Config,
    embedder: Arc<dyn Embedder>,
) -> TestService {
    start_with_parts(ctx, config, embedder, Arc::new(Extractive::default())).await
}

async fn start_with_parts(
    ctx: &TestContext,
    config: Config,
    embedder: Arc<dyn Embedder>,
    generator: Arc<dyn Generator>,
) -> TestService {
    let service = Service::start_with(ctx.store().clone(), embedder, generator, config)
        .await
        .expect("the service starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("its address");
    let state = service.state().clone();
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(service.serve(listener, async {
        let _ = stop.await;
    }));
    TestService {
        base_url: format!("http://{addr}"),
        addr,
        state,
        shutdown: Some(shutdown),
        task: Some(task),
    }
}

/// A response: status, headers, body.
#[derive(Debug)]
pub(crate) struct Reply {
    /// HTTP status.
    pub(crate) status: u16,
    /// Response headers.
    pub(crate) headers: HeaderMap,
    /// The body's bytes.
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON (panics, naming the body, when it is not).
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// A header's value as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error.code` of an error body.
    pub(crate) fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.json()))
            .to_owned()
    }
}

impl TestService {
    /// `base_url` + `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("serializable");
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            bytes,
        )
        .await
    }

    /// `POST path` with a JSON body and an API key.
    pub(crate) async fn post_json_as(&self, key: &str, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("serializable");
        let headers = [("content-type", "application/json"), ("x-api-key", key)];
        self.send(Method::POST, path, &headers, bytes).await
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], Vec::new()).await
    }

    /// Any request, on a connection of its own.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header("host", self.addr.to_string());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = request
                .body(Full::new(Bytes::from(body)))
                .expect("a valid request");
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Reply {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => panic!("{path}: {error}"),
            Err(_) => panic!("{path}: no answer within {REQUEST_TIMEOUT:?}"),
        }
    }

    /// Polls `GET /v1/documents/{id}` until it is `ready`, at most `limit`.
    pub(crate) async fn wait_ready(&self, id: &str, limit: Duration) -> Value {
        self.wait_status(id, "ready", limit).await
    }

    /// Polls `GET /v1/documents/{id}` until its status is `wanted`, at
    /// most `limit`; returns the last answer.
    pub(crate) async fn wait_status(&self, id: &str, wanted: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let reply = self.get(&format!("/v1/documents/{id}")).await;
            assert_eq!(reply.status, 200, "{}", reply.json());
            let status = reply.json();
            if status["status"] == wanted {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "document {id} not {wanted} within {limit:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the traces of every request answered so far are in
    /// MongoDB (the service writes them off the response path).
    pub(crate) async fn flush_traces(&self) {
        let flushed = self.state.traces.flush(Duration::from_secs(10)).await;
        assert!(flushed, "the traces were not written within 10 s");
    }

    /// Stops serving, the workers and the relay; panics if serving failed.
    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let outcome = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the service stops within 30 s");
            outcome.expect("the serving task").expect("serving");
        }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Outbox rows recorded for `queue`, delivered or not.
pub(crate) async fn outbox_rows(ctx: &TestContext, queue: &str) -> i64 {
    let pg = ctx.store().postgres().unwrap();
    reposmith::postgres::sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM reposmith_outbox WHERE destination = $1",
    )
    .bind(format!("queue:{queue}"))
    .fetch_one(pg.pool())
    .await
    .unwrap()
}

/// Nothing reached the test's stores: no document, no chunk, no job in the
/// outbox, no conversation.
pub(crate) async fn assert_nothing_stored(ctx: &TestContext) {
    let store = ctx.store();
    let documents = store.repo::<Document>().unwrap();
    assert_eq!(
        documents.count(Filter::all()).await.unwrap(),
        0,
        "documents stored"
    );
    let chunks = store.repo::<Chunk>().unwrap();
    assert_eq!(
        chunks.count(Filter::all()).await.unwrap(),
        0,
        "chunks stored"
    );
    let pg = store.postgres().unwrap();
    let jobs =
        reposmith::postgres::sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reposmith_outbox")
            .fetch_one(pg.pool())
            .await
            .unwrap();
    assert_eq!(jobs, 0, "jobs recorded in the outbox");
    let sessions = store.repo::<ChatSession>().unwrap();
    assert_eq!(
        sessions.count(Filter::all()).await.unwrap(),
        0,
        "conversations stored"
    );
    let messages = store.repo::<ChatMessage>().unwrap();
    assert_eq!(
        messages.count(Filter::all()).await.unwrap(),
        0,
        "messages stored"
    );
}

/// The deterministic `TestEmbedder`, counting how often each text was
/// embedded, and failing every call that holds a text containing
/// [`CountingEmbedder::POISON`].
pub(crate) struct CountingEmbedder {
    inner: TestEmbedder,
    calls: Mutex<HashMap<String, usize>>,
}

impl CountingEmbedder {
    /// A text containing this makes the call fail.
    pub(crate) const POISON: &'static str = "POISON";

    pub(crate) fn new() -> CountingEmbedder {
        CountingEmbedder {
            inner: TestEmbedder::new(EMBEDDING_DIMS).expect("384 dims"),
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// How many calls embedded `text`.
    pub(crate) fn calls_for(&self, text: &str) -> usize {
        let calls = self.calls.lock().unwrap();
        calls.get(text).copied().unwrap_or(0)
    }
}

impl Embedder for CountingEmbedder {
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        {
            let mut calls = self.calls.lock().unwrap();
            for text in texts {
                *calls.entry(text.clone()).or_default() += 1;
            }
        }
        if texts.iter().any(|t| t.contains(Self::POISON)) {
            return Box::pin(async { Err(EmbedError::new("the model chokes on poison")) });
        }
        self.inner.embed(texts)
    }
}
