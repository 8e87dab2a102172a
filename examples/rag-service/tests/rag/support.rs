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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use reposmith::Embedder;
use reposmith::testing::{TestContext, TestEmbedder};
use reposmith_example_rag::answer::{Extractive, Generator};
use reposmith_example_rag::app::{AppState, Service};
use reposmith_example_rag::config::Config;
use reposmith_example_rag::domain::EMBEDDING_DIMS;
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
        let deadline = Instant::now() + limit;
        loop {
            let reply = self.get(&format!("/v1/documents/{id}")).await;
            assert_eq!(reply.status, 200, "{}", reply.json());
            let status = reply.json();
            if status["status"] == "ready" {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "document {id} not ready within {limit:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
