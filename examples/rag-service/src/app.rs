//! The service assembled: [`AppState`] (the store, the embedder, the
//! generator, the limiter, the settings), [`router`] (every route behind
//! the request layer), and [`Service`], which starts the pipeline's workers
//! and serves until shut down. `src/main.rs` and the tests both build the
//! service through [`Service::start`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reposmith::limit::{Limit, Limiter, LimiterOptions, Policy};
use reposmith::queue::QueueOptions;
use reposmith::{Embedder, Store};
use tokio::net::TcpListener;

use crate::answer::{Extractive, Generator};
use crate::api::query_vectors::QueryVectors;
use crate::api::traces::TraceWriter;
use crate::config::Config;
use crate::domain::Chunk;
use crate::jobs::Pipeline;

pub use crate::api::router;

/// What every handler reads; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
pub struct Shared {
    /// PostgreSQL, MongoDB and Redis.
    pub store: Store,
    /// Embeds search queries (and, in the workers, chunks).
    pub embedder: Arc<dyn Embedder>,
    /// The queries' embeddings, cached in process.
    pub queries: QueryVectors,
    /// Writes the request traces off the response path.
    pub traces: TraceWriter,
    /// Writes answers from passages.
    pub generator: Arc<dyn Generator>,
    /// Requests and tokens per minute, per API key.
    pub limiter: Limiter,
    /// The settings.
    pub config: Config,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The limiter's policy: `rpm` counts requests, `tpm` tokens (a request's
/// body bytes / 4, plus an answer's tokens for `/v1/ask`).
pub fn policy(config: &Config) -> Policy {
    let minute = Duration::from_secs(60);
    Policy::new("rag")
        .with(Limit::requests("rpm", config.requests_per_minute, minute))
        .with(Limit::tokens("tpm", config.tokens_per_minute, minute))
}

impl AppState {
    /// The state over a connected `store` (PostgreSQL, MongoDB and Redis
    /// configured). The embedder becomes the chunks' repository embedder.
    /// Starts the trace writer, so it must run inside a Tokio runtime.
    pub fn new(
        store: Store,
        embedder: Arc<dyn Embedder>,
        generator: Arc<dyn Generator>,
        config: Config,
    ) -> reposmith::Result<AppState> {
        store.postgres()?.set_embedder::<Chunk>(embedder.clone());
        store.mongo()?;
        let options = match config.limits_fail_open {
            true => LimiterOptions::fail_open(1),
            false => LimiterOptions::fail_closed(),
        };
        let limiter = store
            .redis()?
            .limiter(policy(&config), options.prefix(config.redis_prefix.clone()))?;
        let queries = QueryVectors::new(
            embedder.clone(),
            config.query_cache_entries,
            config.query_cache_ttl,
            config.embed_timeout,
        );
        let traces = TraceWriter::start(store.clone());
        Ok(AppState(Arc::new(Shared {
            store,
            embedder,
            queries,
            traces,
            generator,
            limiter,
            config,
        })))
    }
}

/// A running service: the pipeline's workers and the HTTP server.
pub struct Service {
    state: AppState,
    pipeline: Pipeline,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("state", &self.state)
            .finish()
    }
}

impl Service {
    /// Starts the relay and the workers, with the extractive generator.
    pub async fn start(
        store: Store,
        embedder: Arc<dyn Embedder>,
        config: Config,
    ) -> reposmith::Result<Service> {
        Service::start_with(store, embedder, Arc::new(Extractive::default()), config).await
    }

    /// Starts the relay and the workers with an application's generator.
    pub async fn start_with(
        store: Store,
        embedder: Arc<dyn Embedder>,
        generator: Arc<dyn Generator>,
        config: Config,
    ) -> reposmith::Result<Service> {
        let queues = QueueOptions::default().prefix(config.redis_prefix.clone());
        let pipeline = Pipeline::start(
            &store,
            embedder.clone(),
            queues,
            config.embed_workers,
            config.embed_timeout,
        )
        .await?;
        let state = AppState::new(store, embedder, generator, config)?;
        Ok(Service { state, pipeline })
    }

    /// The state the routes share.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` completes, then lets requests
    /// in flight finish (each bounded by the request timeout), writes the
    /// traces still queued, stops the workers (running jobs get the
    /// shutdown grace) and the relay.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = router(self.state.clone());
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        self.state
            .traces
            .shutdown(self.state.config.shutdown_grace)
            .await;
        if let Err(error) = self
            .pipeline
            .shutdown(self.state.config.shutdown_grace)
            .await
        {
            tracing::warn!(%error, "the outbox relay stopped with an error");
        }
        served
    }
}
